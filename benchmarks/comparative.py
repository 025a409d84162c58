"""Comparative benchmark (issue 7 item 5): SettleProof against a no-consensus reference poller, same workload.

First SettleProof: anvil (1 s blocks), three honest chaos proxies, the merchant
and 4 real agents on 4 Tendermint validators, confirmations 3, as in `make demo`. Once a
first period has been checkpointed, `--invoices` invoices are created and paid
at `--rate` payments per second (raw `eth_sendTransaction` from anvil's dev
accounts, mined by the 1 s blocks), and the benchmark waits for every verified
webhook. Then the same workload on a fresh anvil and merchant through the
REFERENCE POLLER (`benchmarks/reference_poller.py`: one subprocess, one
provider behind one chaos proxy, `eth_getLogs` up to head - confirmations,
one-to-one matching, one signed POST), the floor.

For each: verification latency p50/p95/max (from the timestamp of block
payment block + confirmations to the merchant's verified receipt, as `make demo`
computes it), settlements per minute (from the first payment sent to the last
verified webhook), RPC requests and bytes per settlement (all proxies, same
window), CPU seconds (user+sys of each process tree over the window) and peak
RSS (sampled every `--sample-interval` s); and SettleProof / reference for each.
Writes the JSON report (also on stdout), a Markdown table (also on stderr) and
a PNG of the two latency CDFs to `--results-dir`. A benchmark, not a test: it
asserts nothing; it exits 1 only when a run did not complete.

    .venv/bin/python benchmarks/comparative.py --invoices 1000 --rate 8   # SETTLEPROOF_REGISTRY=... for another one
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "src")]

import psutil  # noqa: E402
from eth_account import Account  # noqa: E402
from web3 import Web3  # noqa: E402

from settleproof.agent_runner import AgentError  # noqa: E402
from settleproof.agent_logs import event  # noqa: E402
from settleproof.anvil import Anvil  # noqa: E402
from settleproof.chaos import ChaosServer  # noqa: E402
from settleproof.devnet.network import Devnet  # noqa: E402
from settleproof.erc20 import deploy_token  # noqa: E402
from settleproof.merchant import MerchantServer, new_secret  # noqa: E402
from settleproof.service_env import settleproof_env  # noqa: E402
from support import (  # noqa: E402
    add_service_args, agent_pids, cpu_seconds, node_pids, rss_bytes, say, service_settings, wait_for_events,
)

TRANSFER_SELECTOR = "0xa9059cbb"
PROVIDERS = 3
POLLER = Path(__file__).resolve().with_name("reference_poller.py")


# ---------------------------------------------------------------------- pure parts (unit-tested)
def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (the smallest value with at least `fraction` of the values at or below it)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(round(fraction * len(ordered), 9)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(latencies: Sequence[float]) -> Dict[str, Optional[float]]:
    """p50, p95 and max in seconds (None when nothing was measured)."""
    if not latencies:
        return {"count": 0, "p50_s": None, "p95_s": None, "max_s": None}
    return {"count": len(latencies), "p50_s": round(percentile(latencies, 0.5), 3),
            "p95_s": round(percentile(latencies, 0.95), 3), "max_s": round(max(latencies), 3)}


def ratio(ours: Optional[float], floor: Optional[float]) -> Optional[float]:
    """ours / floor, rounded; None when either is missing or the floor is zero."""
    if ours is None or floor is None or floor == 0:
        return None
    return round(ours / floor, 2)


#: (key, label) of every compared figure, in table order; both sides' "figures" hold these keys.
ROWS: Tuple[Tuple[str, str], ...] = (
    ("latency_p50_s", "verification latency p50 (s)"),
    ("latency_p95_s", "verification latency p95 (s)"),
    ("latency_max_s", "verification latency max (s)"),
    ("settlements_per_minute", "settlements per minute"),
    ("rpc_requests_per_settlement", "RPC requests per settlement (all providers)"),
    ("rpc_kb_per_settlement", "RPC kB per settlement (sent + received)"),
    ("cpu_s_per_process", "CPU s per agent (mean) / poller"),
    ("cpu_s_total", "CPU s, whole service / poller"),
    ("peak_rss_mb_per_process", "peak RSS MB per agent (max) / poller"),
    ("peak_rss_mb_total", "peak RSS MB, agents (sum) / poller"),
    ("cpu_s_per_node", "CPU s per Tendermint node (mean)"),
    ("peak_rss_mb_per_node", "peak RSS MB per Tendermint node (max)"),
)


def ratios(ours: Dict[str, Any], floor: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """SettleProof / reference for every row."""
    return {key: ratio(ours.get(key), floor.get(key)) for key, _ in ROWS}


def figures(latency: Dict[str, Any], settled: int, seconds: Optional[float], traffic: Dict[str, int],
            cpu: Dict[str, float], rss_mb: Dict[str, float]) -> Dict[str, Any]:
    """One side's compared figures from its raw measurements (per process: CPU s and peak RSS MB).

    Processes named `node<i>` are Tendermint nodes, reported apart from the agents (or the poller).
    """
    per = settled or None
    nodes_cpu = {name: value for name, value in cpu.items() if name.startswith("node")}
    nodes_rss = {name: value for name, value in rss_mb.items() if name.startswith("node")}
    cpu = {name: value for name, value in cpu.items() if name not in nodes_cpu}
    rss_mb = {name: value for name, value in rss_mb.items() if name not in nodes_rss}

    def each(total: float) -> Optional[float]:
        return round(total / per, 3) if per else None

    return {
        "latency_p50_s": latency["p50_s"], "latency_p95_s": latency["p95_s"], "latency_max_s": latency["max_s"],
        "settlements_per_minute": round(60 * settled / seconds, 1) if seconds else None,
        "rpc_requests_per_settlement": each(traffic["requests"]),
        "rpc_kb_per_settlement": each(traffic["bytes"] / 1000),
        "cpu_s_per_process": round(sum(cpu.values()) / len(cpu), 2) if cpu else None,
        "cpu_s_total": round(sum(cpu.values()), 2) if cpu else None,
        "peak_rss_mb_per_process": max(rss_mb.values()) if rss_mb else None,
        "peak_rss_mb_total": round(sum(rss_mb.values()), 1) if rss_mb else None,
        "cpu_s_per_node": round(sum(nodes_cpu.values()) / len(nodes_cpu), 2) if nodes_cpu else None,
        "peak_rss_mb_per_node": max(nodes_rss.values()) if nodes_rss else None,
    }


def markdown_table(ours: Dict[str, Any], floor: Dict[str, Any], note: str = "") -> str:
    """The side-by-side table (SettleProof, reference, ratio) with an optional note below."""

    def cell(value: Any) -> str:
        return "n/a" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"

    both = ratios(ours, floor)
    lines = ["| metric | SettleProof (4 agents, 3 providers) | reference poller (1 process, 1 provider) "
             "| SettleProof / reference |", "|---|---|---|---|"]
    lines += [f"| {label} | {cell(ours.get(key))} | {cell(floor.get(key))} | {cell(both[key])} |"
              for key, label in ROWS]
    return "\n".join(lines) + (f"\n\n{note}\n" if note else "\n")


# ---------------------------------------------------------------------- the PNG, without matplotlib
GLYPHS = {ch: rows.replace(" ", "") for ch, rows in {  # 3x5 bitmaps, rows top to bottom
    "A": ".#. #.# ### #.# #.#", "B": "##. #.# ##. #.# ##.", "C": ".## #.. #.. #.. .##", "D": "##. #.# #.# #.# ##.",
    "E": "### #.. ##. #.. ###", "F": "### #.. ##. #.. #..", "G": ".## #.. #.# #.# .##", "H": "#.# #.# ### #.# #.#",
    "I": "### .#. .#. .#. ###", "K": "#.# #.# ##. #.# #.#", "L": "#.. #.. #.. #.. ###", "M": "#.# ### ### #.# #.#",
    "N": "##. #.# #.# #.# #.#", "O": ".#. #.# #.# #.# .#.", "P": "##. #.# ##. #.. #..", "R": "##. #.# ##. #.# #.#",
    "S": ".## #.. .#. ..# ##.", "T": "### .#. .#. .#. .#.", "U": "#.# #.# #.# #.# ###", "V": "#.# #.# #.# #.# .#.",
    "W": "#.# #.# ### ### #.#", "Y": "#.# #.# .#. .#. .#.", "0": "### #.# #.# #.# ###", "1": ".#. ##. .#. .#. ###",
    "2": "##. ..# .#. #.. ###", "3": "##. ..# .#. ..# ##.", "4": "#.# #.# ### ..# ..#", "5": "### #.. ##. ..# ##.",
    "6": ".## #.. ### #.# ###", "7": "### ..# .#. .#. .#.", "8": "### #.# ### #.# ###", "9": "### #.# ### ..# ##.",
    ".": "... ... ... ... .#.", "%": "#.# ..# .#. #.. #.#", "-": "... ... ### ... ...", "(": ".#. #.. #.. #.. .#.",
    ")": ".#. ..# ..# ..# .#.", "/": "..# ..# .#. #.. #..", "=": "... ### ... ### ...", ",": "... ... ... .#. #..",
}.items()}


class Canvas:
    """An RGB pixel buffer with just what two step CDFs, axes and labels need."""

    def __init__(self, width: int, height: int) -> None:
        """White canvas."""
        self.width, self.height = width, height
        self.pixels = bytearray(b"\xff" * (width * height * 3))

    def dot(self, x: int, y: int, color: Tuple[int, int, int]) -> None:
        """One pixel, clipped."""
        if 0 <= x < self.width and 0 <= y < self.height:
            offset = 3 * (y * self.width + x)
            self.pixels[offset:offset + 3] = bytes(color)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Tuple[int, int, int]) -> None:
        """Filled rectangle, corners included in any order."""
        for y in range(min(y0, y1), max(y0, y1) + 1):
            for x in range(min(x0, x1), max(x0, x1) + 1):
                self.dot(x, y, color)

    def text(self, x: int, y: int, text: str, color: Tuple[int, int, int] = (0, 0, 0), scale: int = 2) -> None:
        """Upper-case text in the 3x5 font; unknown characters are blanks."""
        for index, char in enumerate(text.upper()):
            bits = GLYPHS.get(char, "." * 15)
            for cell, bit in enumerate(bits):
                if bit == "#":
                    left, top = x + (4 * index + cell % 3) * scale, y + (cell // 3) * scale
                    self.rect(left, top, left + scale - 1, top + scale - 1, color)

    def png(self) -> bytes:
        """The canvas as an 8-bit RGB PNG."""

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        stride = 3 * self.width
        raw = b"".join(b"\x00" + bytes(self.pixels[y * stride:(y + 1) * stride]) for y in range(self.height))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        image = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
        return b"\x89PNG\r\n\x1a\n" + image


def cdf_png(series: Iterable[Tuple[str, Tuple[int, int, int], Sequence[float]]], title: str) -> bytes:
    """Step CDFs of each (label, color, values) on one log-seconds axis (0.1 s up), with a legend.

    Log scale because the two services' latencies differ by orders of magnitude; values below 0.1 s
    are drawn at 0.1 s.
    """
    series = [(label, color, sorted(values)) for label, color, values in series]
    width, height, left, right, top, bottom = 760, 440, 70, 20, 50, 60
    canvas = Canvas(width, height)
    longest = max((values[-1] for _, _, values in series if values), default=1.0)
    decades = max(1, math.ceil(math.log10(max(longest, 0.1)) + 1 - 1e-9))  # from 0.1 s to 10**(decades-1) s
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(seconds: float) -> int:
        return left + round(plot_w * (math.log10(max(seconds, 0.1)) + 1) / decades)

    def py(fraction: float) -> int:
        return top + plot_h - round(plot_h * fraction)

    grey, black = (220, 220, 220), (0, 0, 0)
    for decade in range(decades + 1):
        seconds = 10.0 ** (decade - 1)
        for minor in (2, 5):
            if decade < decades:
                canvas.rect(px(minor * seconds), top, px(minor * seconds), top + plot_h, (240, 240, 240))
        canvas.rect(px(seconds), top, px(seconds), top + plot_h, grey)
        label = f"{seconds:g}"
        canvas.text(px(seconds) - 4 * len(label), top + plot_h + 8, label)
    for tick in range(5):
        canvas.rect(left, py(tick / 4), left + plot_w, py(tick / 4), grey)
        label = f"{25 * tick}%"
        canvas.text(left - 8 - 8 * len(label), py(tick / 4) - 5, label)
    canvas.rect(left, top, left, top + plot_h, black)
    canvas.rect(left, top + plot_h, left + plot_w, top + plot_h, black)
    for label, color, values in series:
        x, y = px(0), py(0)
        for rank, seconds in enumerate(values, 1):
            canvas.rect(x, y, px(seconds), y + 1, color)  # flat until the next value
            x, y_next = px(seconds), py(rank / len(values))
            canvas.rect(x, y_next, x + 1, y, color)  # the step up
            y = y_next
        canvas.rect(x, y, left + plot_w, y + 1, color)
    canvas.text(left, 14, title)
    canvas.text(left + plot_w // 2 - 200, height - 24, "SECONDS (LOG) FROM CONFIRMATION DEPTH TO VERIFIED WEBHOOK")
    for index, (label, color, values) in enumerate(series):
        y = 8 + 18 * index  # above the plot, where no curve runs
        canvas.rect(left + plot_w - 300, y, left + plot_w - 284, y + 9, color)
        canvas.text(left + plot_w - 276, y, f"{label} (N={len(values)})")
    return canvas.png()


# ---------------------------------------------------------------------- measuring processes
class Window:
    """CPU and proxy traffic between `start()` and `stop()`, and each process tree's peak RSS meanwhile."""

    def __init__(self, pids: Dict[str, int], proxies: Sequence[ChaosServer], interval: float) -> None:
        """Nothing is measured until `start()`."""
        self.pids, self.proxies, self.interval = pids, proxies, interval
        self.peak = {name: 0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._cpu0: Dict[str, float] = {}
        self._traffic0: Dict[str, int] = {}
        self.result: Dict[str, Any] = {}

    def _traffic(self) -> Dict[str, int]:
        snapshots = [proxy.traffic() for proxy in self.proxies]
        return {"requests": sum(sum(s["requests"].values()) for s in snapshots),
                "bytes": sum(s["bytes_in"] + s["bytes_out"] for s in snapshots)}

    def _sample(self) -> None:
        while True:
            for name, pid in self.pids.items():
                try:
                    self.peak[name] = max(self.peak[name], rss_bytes(pid))
                except psutil.NoSuchProcess:
                    pass
            if self._stop.wait(self.interval):  # the sampling period
                return

    def start(self) -> None:
        """Read the counters and start sampling."""
        self._cpu0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._traffic0 = self._traffic()
        self._thread.start()

    def stop(self) -> Dict[str, Any]:
        """CPU s and peak RSS MB per process, traffic of all proxies, over the window."""
        self._stop.set()
        self._thread.join()
        traffic = self._traffic()
        self.result = {
            "cpu_s": {name: round(cpu_seconds(pid) - self._cpu0[name], 2) for name, pid in self.pids.items()},
            "peak_rss_mb": {name: round(peak / 2**20, 1) for name, peak in self.peak.items()},
            "traffic": {key: traffic[key] - self._traffic0[key] for key in traffic},
        }
        return self.result


class PollerProcess:
    """The reference poller as a subprocess, up once it printed `ready`; stopped by its PID on exit."""

    def __init__(self, args: List[str], secret: str, log_path: Path) -> None:
        """Nothing runs until entered."""
        self.args, self.secret, self.log_path = args, secret, log_path
        self.process: Optional[subprocess.Popen] = None

    def __enter__(self) -> "PollerProcess":
        """Start it and wait for its `ready` line."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, str(POLLER), *self.args], stdout=subprocess.PIPE, stderr=log,
                env={**os.environ, "SETTLEPROOF_WEBHOOK_SECRET": self.secret},
            )
        assert self.process.stdout is not None  # nosec B101
        line = self.process.stdout.readline()  # blocks until ready, or EOF if it exited
        if line.strip() != b"ready":
            self.__exit__()
            raise RuntimeError(f"the reference poller did not start (see {self.log_path})")
        return self

    def __exit__(self, *exc: Any) -> None:
        """SIGTERM, then SIGKILL if it does not end."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    @property
    def pid(self) -> int:
        """Its PID."""
        assert self.process is not None  # nosec B101
        return self.process.pid


# ---------------------------------------------------------------------- the workload
def pay_over_time(node: Anvil, w3: Web3, token: str, merchant: MerchantServer, count: int,
                  rate: float) -> List[Dict[str, Any]]:
    """`count` invoices, each created then paid at once, at `rate` payments per second (fresh receivers)."""
    senders = w3.eth.accounts[1:]
    payments = []
    started = time.monotonic()
    for index in range(count):
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the workload's pacing, not a wait for anything
        receiver = Account.create().address
        amount = 1_000 + index
        invoice = merchant.add_invoice(token=token, receiver=receiver, amount=str(amount))
        data = TRANSFER_SELECTOR + receiver[2:].lower().rjust(64, "0") + f"{amount:064x}"
        tx_hash = node.rpc("eth_sendTransaction", [{"from": senders[index % len(senders)], "to": token, "data": data}])
        payments.append({"invoice_uuid": invoice["uuid"], "tx_hash": tx_hash, "sent_at": time.time()})
        if (index + 1) % 200 == 0:
            say(f"  paid {index + 1}/{count}")
    return payments


def outcome(node: Anvil, token: str, merchant: MerchantServer, payments: List[Dict[str, Any]],
            first_block: int, confirmations: int) -> Dict[str, Any]:
    """Latencies from the chain (block + confirmations timestamp) to each verified receipt, and the checks."""
    logs = node.rpc("eth_getLogs", [{"fromBlock": hex(first_block), "toBlock": "latest", "address": token}],
                    timeout=120)
    block_of = {log["transactionHash"]: int(log["blockNumber"], 16) for log in logs}
    stamps: Dict[int, float] = {}
    state = merchant.report()
    events = {event["id"]: event for event in state["events"]}
    latencies, missing = [], 0
    for payment in payments:
        event = events.get(f"{payment['invoice_uuid']}:{payment['tx_hash']}")
        block = block_of.get(payment["tx_hash"])
        if event is None or block is None:
            missing += 1
            continue
        depth = block + confirmations
        if depth not in stamps:
            stamps[depth] = float(int(node.rpc("eth_getBlockByNumber", [hex(depth), False])["timestamp"], 16))
        latencies.append(event["received_at_unix"] - stamps[depth])
    expected = {f"{p['invoice_uuid']}:{p['tx_hash']}" for p in payments}
    receipts = [event["received_at_unix"] for event in state["events"]]
    return {
        "latencies": latencies, "settled": len(latencies), "missing": missing,
        "unexpected_events": len(set(events) - expected), "duplicates": sum(state["duplicates"].values()),
        "rejected": state["rejected"], "conflicts": len(state["conflicts"]),
        "payment_blocks": [min(block_of.values()), max(block_of.values())] if block_of else None,
        "seconds_first_payment_to_last_webhook": round(max(receipts) - payments[0]["sent_at"], 3)
        if receipts and payments else None,
    }


def side(result: Dict[str, Any], window: Dict[str, Any]) -> Dict[str, Any]:
    """One run's report: checks, latency summary, raw window and the compared figures."""
    latencies = result.pop("latencies")
    latency = {**summarize(latencies), "all_s": [round(value, 3) for value in latencies]}  # to re-plot
    return {**result, "latency": latency, "window": window,
            "figures": figures(latency, result["settled"], result["seconds_first_payment_to_last_webhook"],
                               window["traffic"], window["cpu_s"], window["peak_rss_mb"])}


# ---------------------------------------------------------------------- the two runs
@dataclass
class Stage:
    """What both runs start the same way: anvil (1 s blocks) with the token, and the merchant."""

    node: Anvil
    w3: Web3
    token: str
    merchant: MerchantServer
    secret: str

    @classmethod
    def enter(cls, stack: ExitStack) -> "Stage":
        """Start both inside `stack`, so they stop with it."""
        secret = new_secret()
        node = stack.enter_context(Anvil(block_time=1))
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
        token = deploy_token(w3)
        return cls(node, w3, token, stack.enter_context(MerchantServer(secret=secret)), secret)

    def measure(self, label: str, window: "Window", args: argparse.Namespace) -> Tuple[Dict[str, Any], List[float]]:
        """Pay the workload, wait for its webhooks, and report what the window measured; (report, latencies)."""
        window.start()
        first_block = self.node.block_number() + 1
        say(f"{label}: paying {args.invoices} invoices at {args.rate}/s from block {first_block} ...")
        payments = pay_over_time(self.node, self.w3, self.token, self.merchant, args.invoices, args.rate)
        error = wait_for_events(self.merchant, args.invoices, args.timeout, step=200)
        measured = window.stop()
        result = outcome(self.node, self.token, self.merchant, payments, first_block, args.confirmations)
        latencies = list(result["latencies"])  # before `side`, which takes them out of the result
        return {"error": error, **side(result, measured)}, latencies


def run_settleproof(args: argparse.Namespace, data_dir: Path) -> Tuple[Dict[str, Any], List[float]]:
    """The 4-agent service through three providers; (report, latencies)."""
    with ExitStack() as stack:
        stage = Stage.enter(stack)
        proxies = [stack.enter_context(ChaosServer(stage.node.url)) for _ in range(PROVIDERS)]
        env = settleproof_env([p.url for p in proxies], stage.token, stage.merchant, stage.secret,
                              args.confirmations, stage.node.block_number())
        devnet = Devnet(args.agents, data_dir, env=env, settings=service_settings(args))
        say(f"SettleProof: starting the devnet with {args.agents} agents in {data_dir} ...")
        try:
            stack.enter_context(devnet)
            devnet.wait_registered(timeout=300)
            devnet.agent(0).wait_for(event("checkpoint"), 300, "a first period")  # a warm service: one period done
        except AgentError as error:
            return {"error": f"the service did not start: {str(error).splitlines()[0]}"}, []
        manifest = devnet.manifest()
        pids = {**agent_pids(manifest), **node_pids(manifest)}
        return stage.measure("SettleProof", Window(pids, proxies, args.sample_interval), args)


def run_reference(args: argparse.Namespace, log_path: Path) -> Tuple[Dict[str, Any], List[float]]:
    """The same workload through the reference poller on a fresh anvil and merchant; (report, latencies)."""
    with ExitStack() as stack:
        stage = Stage.enter(stack)
        proxy = stack.enter_context(ChaosServer(stage.node.url))
        say("reference: starting the poller ...")
        poller = stack.enter_context(PollerProcess([
            "--rpc", proxy.url, "--token", stage.token, "--invoices-url", stage.merchant.invoices_url,
            "--webhook-url", stage.merchant.webhook_url, "--confirmations", str(args.confirmations),
            "--start-block", str(stage.node.block_number()), "--interval", str(args.poll_interval),
        ], stage.secret, log_path))
        report, latencies = stage.measure("reference", Window({"poller": poller.pid}, [proxy], args.sample_interval), args)
    return {"poll_interval_s": args.poll_interval, **report}, latencies


NOTE = ("Latency: from the timestamp of block (payment block + {c}) to the merchant's verified receipt "
        "(anvil timestamps are whole seconds). {n} invoices paid at {r}/s (1 s blocks, confirmations {c}); "
        "window for RPC, CPU and RSS: first payment to last verified webhook. SettleProof runs on 4 real "
        "Tendermint validators, one per agent; a node's figures are its control server and `tendermint node`. "
        "Reference poller: one subprocess, one provider, a pass every {p} s.")


def main() -> None:
    """Both runs, one after the other; the report, table and plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=8.0, help="payments per second (1 s blocks)")
    add_service_args(parser, confirmations=3)
    parser.add_argument("--poll-interval", type=float, default=0.5, help="the reference poller's pass interval (s)")
    parser.add_argument("--sample-interval", type=float, default=0.5, help="RSS sampling period (s)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the webhooks after paying")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--data-dir", type=Path, default=None, help="devnet folder (default: a new temporary one)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop agents, anvil and the poller on the way out
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="settleproof-bench-comparative-"))
    started = time.monotonic()
    ours, our_latencies = run_settleproof(args, data_dir)
    floor: Dict[str, Any] = {"error": "not run: the SettleProof run did not complete"}
    floor_latencies: List[float] = []
    if ours["error"] is None:
        floor, floor_latencies = run_reference(args, data_dir / "reference-poller.log")
    report: Dict[str, Any] = {
        "args": {**vars(args), "results_dir": str(args.results_dir), "data_dir": str(data_dir)},
        "error": ours["error"] or floor["error"],
        "seconds": round(time.monotonic() - started, 1),
        "settleproof": ours, "reference": floor,
        "ratio_settleproof_to_reference": ratios(ours.get("figures", {}), floor.get("figures", {})),
    }
    note = NOTE.format(n=args.invoices, r=args.rate, c=args.confirmations, p=args.poll_interval)
    table = markdown_table(ours.get("figures", {}), floor.get("figures", {}), note)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, default=str)
    (args.results_dir / "comparative.json").write_text(text + "\n")
    (args.results_dir / "comparative.md").write_text(table)
    (args.results_dir / "comparative-latency.png").write_bytes(cdf_png(
        [("SettleProof", (31, 119, 180), our_latencies), ("reference poller", (255, 127, 14), floor_latencies)],
        "VERIFICATION LATENCY CDF"))
    say("\n" + table)
    print(text)
    if report["error"] is not None:  # a run did not complete (the report says why): `make bench` fails
        sys.exit(1)


if __name__ == "__main__":
    main()
