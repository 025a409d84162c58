"""The comparative benchmark's pure parts: percentiles, ratios, the Markdown table and the PNG encoder."""

import importlib.util
import struct
import sys
import zlib
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "comparative", Path(__file__).resolve().parents[1] / "benchmarks" / "comparative.py"
)
comparative = importlib.util.module_from_spec(SPEC)
sys.modules["comparative"] = comparative  # dataclasses look their module up there
SPEC.loader.exec_module(comparative)


def test_summary_is_nearest_rank_and_empty_is_none() -> None:
    """p50/p95/max as `make demo` computes them; no samples gives None, not an error."""
    assert comparative.summarize([float(v) for v in range(1, 21)]) == {
        "count": 20, "p50_s": 10.0, "p95_s": 19.0, "max_s": 20.0,
    }
    assert comparative.summarize([])["p95_s"] is None


def test_ratio_skips_missing_and_zero_floors() -> None:
    """A zero or missing side gives None rather than a division error."""
    assert comparative.ratio(3.0, 1.5) == 2.0
    assert comparative.ratio(3.0, 0) is None
    assert comparative.ratio(None, 1.0) is None


def test_figures_and_table() -> None:
    """Per-settlement and per-process figures, and one table row per figure with its ratio."""
    latency = comparative.summarize([1.0, 2.0])
    ours = comparative.figures(latency, 10, 30.0, {"requests": 50, "bytes": 20_000},
                               {"agent0": 2.0, "agent1": 4.0, "node0": 1.0, "node1": 2.0},
                               {"agent0": 100.0, "agent1": 120.0, "node0": 30.0, "node1": 40.0})
    floor = comparative.figures(latency, 10, 60.0, {"requests": 10, "bytes": 2_000}, {"poller": 0.5}, {"poller": 20.0})
    assert ours["settlements_per_minute"] == 20.0
    assert ours["rpc_requests_per_settlement"] == 5.0 and ours["rpc_kb_per_settlement"] == 2.0
    assert ours["cpu_s_per_process"] == 3.0 and ours["cpu_s_total"] == 6.0
    assert ours["peak_rss_mb_per_process"] == 120.0 and ours["peak_rss_mb_total"] == 220.0
    assert ours["cpu_s_per_node"] == 1.5 and ours["peak_rss_mb_per_node"] == 40.0  # nodes apart from agents
    assert floor["cpu_s_per_node"] is None
    table = comparative.markdown_table(ours, floor, "a note")
    assert table.count("\n|") == len(comparative.ROWS) + 1
    assert "| RPC requests per settlement (all providers) | 5 | 1 | 5 |" in table
    assert table.rstrip().endswith("a note")
    assert "n/a" in comparative.markdown_table(ours, {})


def test_png_is_a_valid_rgb_image() -> None:
    """Signature, IHDR size and an IDAT that inflates to height rows of width RGB pixels."""
    data = comparative.cdf_png([("a", (0, 0, 255), [1.0, 2.0, 3.0]), ("b", (255, 0, 0), [])], "T")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4:idat])[0]
    assert len(zlib.decompress(data[idat + 4:idat + 4 + length])) == height * (1 + 3 * width)
