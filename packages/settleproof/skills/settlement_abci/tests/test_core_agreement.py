"""Cross-agent agreement: safe (threshold), order-independent, and never skipping a payment
that more agents could still confirm."""

from collections import Counter
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.agreement import (
    Agreement,
    Observation,
    INVOICE_NOT_SETTLED,
    PAYMENT_NOT_CONFIRMED,
    TOO_FEW_INVOICE_LISTS,
    TOO_FEW_OBSERVATIONS,
    Payment,
    agree,
    agree_explained,
)
from packages.settleproof.skills.settlement_abci.invoices import Invoice
from packages.settleproof.skills.settlement_abci.tests.strategies import (
    RECEIVERS,
    address,
    chain_logs,
    examples,
    make_invoice,
    make_transfer,
    open_invoices,
    payment,
    tx_hash,
)


FROM = 100


def threshold_of(participants: int) -> int:
    """The framework's consensus threshold: more than two thirds."""
    return participants * 2 // 3 + 1


def honest_minimum(participants: int) -> int:
    """The fewest agents of which one must be honest: one more than may lie."""
    return max(1, participants - threshold_of(participants) + 1)


def listed_by(observations: Sequence[Observation], destination: Tuple[str, str]) -> int:
    """The most agents listing any one invoice to `destination`."""
    votes = Counter(
        i for o in observations for i in set(o.invoices or ()) if (i.token, i.receiver) == destination
    )
    return max(votes.values(), default=0)


@dataclass(frozen=True)
class World:
    """One period: the chain's payments, the agents' observations, and the parameters."""

    payments: Tuple[Payment, ...]
    observations: Tuple[Observation, ...]
    participants: int
    threshold: int


def honest_observation(
    payments: Sequence[Payment], view: Optional[Sequence[Invoice]], to_block: int
) -> Observation:
    """What an honest agent reports (see observer.py): with no invoices it scans nothing;
    otherwise every payment in range to a receiver it watches (any watched token)."""
    if view is None:
        return Observation(FROM, min(to_block, FROM - 1), (), None)
    receivers = {i.receiver for i in view}
    seen = tuple(
        p for p in payments
        if FROM <= p.transfer.block_number <= to_block and p.transfer.receiver in receivers
    )
    return Observation(FROM, to_block, seen, tuple(view))


@st.composite
def honest_worlds(draw) -> World:
    """Honest agents whose only differences are how far they scanned and which of the
    merchant's invoices they saw (lists differ while the merchant adds invoices)."""
    participants = draw(st.integers(min_value=1, max_value=5))
    threshold = threshold_of(participants)
    invoices = draw(open_invoices(max_size=4))
    payments = tuple(payment(t) for t in draw(chain_logs(min_block=FROM, max_block=FROM + 8)))
    reporting = participants if draw(st.booleans()) else draw(st.integers(1, participants))
    # invoices[:known] every agent has seen; the newer ones only some agents have.
    known = draw(st.integers(0, len(invoices)))
    any_subset = draw(st.integers(0, 3)) == 0
    observations = []
    for _ in range(reporting):
        if draw(st.integers(0, 7)) == 0:
            view = None
        elif any_subset and invoices:
            view = draw(st.lists(st.sampled_from(invoices), unique=True))
        else:
            view = invoices if draw(st.booleans()) else invoices[:known]
        to_block = draw(st.sampled_from([FROM - 1, FROM, FROM + 2, FROM + 5, FROM + 8]))
        observations.append(honest_observation(payments, view, to_block))
    return World(payments, tuple(observations), participants, threshold)


@st.composite
def new_invoice_worlds(draw) -> World:
    """The merchant just listed an invoice to a new receiver and it was paid at once: only
    some agents have seen it (so only they watch its receiver), and they scanned more or
    less far than the others."""
    participants = draw(st.integers(min_value=2, max_value=7))
    threshold = threshold_of(participants)
    older = draw(st.lists(st.sampled_from([make_invoice(uuid="inv-0"), make_invoice(
        uuid="inv-1", receiver=RECEIVERS[1])]), unique=True))
    new = make_invoice(uuid="inv-new", receiver=RECEIVERS[2])
    paid_at = draw(st.integers(FROM, FROM + 8))
    logs = draw(chain_logs(min_block=FROM, max_block=FROM + 8, max_size=3))  # log index <= 5
    payments = tuple(payment(t) for t in logs) + (
        payment(make_transfer(block_number=paid_at, log_index=9, receiver=new.receiver)),
    )
    reporting = participants if draw(st.booleans()) else draw(st.integers(1, participants))
    # Often few enough agents saw it that the others alone make a threshold, but always enough
    # that one of them is honest (`agree` ignores what fewer list: it may be a liar's invention).
    fewest = min(honest_minimum(participants), reporting)
    few = max(fewest, participants - threshold)
    watchers = draw(st.integers(fewest, few if draw(st.booleans()) else reporting))
    # Often the agents that saw the new invoice are also the ones whose providers lag.
    watchers_behind = draw(st.booleans())
    observations = []
    for agent in range(reporting):
        watching = agent < watchers
        if watchers_behind:
            low, high = (paid_at, max(paid_at, FROM + 7)) if watching else (FROM + 7, FROM + 8)
        else:
            low, high = FROM - 1, FROM + 8
        to_block = draw(st.integers(min_value=low, max_value=high))
        observations.append(honest_observation(payments, older + [new] if watching else older, to_block))
    return World(payments, tuple(observations), participants, threshold)


worlds = st.one_of(honest_worlds(), new_invoice_worlds())


@st.composite
def any_observations(draw) -> Tuple[List[Observation], int, int]:
    """Arbitrary (possibly faulty or lying) observations, including stale ranges."""
    participants = draw(st.integers(min_value=1, max_value=5))
    pool = [payment(t) for t in draw(chain_logs(min_block=FROM - 2, max_block=FROM + 8, max_size=5))]
    invoices = draw(open_invoices(max_size=3))
    observations = []
    for _ in range(draw(st.integers(0, participants))):
        payments = draw(st.lists(st.sampled_from(pool), unique=True)) if pool else []
        if draw(st.integers(0, 3)) == 0:
            view = None
        else:
            view = draw(st.lists(st.sampled_from(invoices), unique=True)) if invoices else []
        observations.append(
            Observation(
                from_block=draw(st.sampled_from([FROM, FROM, FROM, FROM + 1])),
                to_block=draw(st.integers(min_value=FROM - 2, max_value=FROM + 8)),
                payments=tuple(payments),
                invoices=None if view is None else tuple(view),
            )
        )
    return observations, draw(st.integers(1, participants)), participants


def reported_by(observations: Sequence[Observation], item: Payment) -> int:
    """How many observations reported a payment."""
    return sum(1 for o in observations if item in o.payments)


# --- safety on arbitrary input ----------------------------------------------------


@examples(80)
@given(any_observations())
def test_never_accepts_what_fewer_than_threshold_agents_saw(data):
    """Every agreed payment and invoice was reported by >= threshold observations of the range."""
    observations, threshold, participants = data
    result = agree(observations, FROM, threshold, participants)
    relevant = [o for o in observations if o.from_block == FROM]
    for item in result.payments:
        assert reported_by(relevant, item) >= threshold
        assert FROM <= item.transfer.block_number <= result.to_block
    invoice_votes = Counter(i for o in relevant for i in set(o.invoices or ()))
    for invoice in result.invoices:
        assert invoice_votes[invoice] >= threshold


@examples(80)
@given(any_observations())
def test_range_never_exceeds_what_threshold_agents_covered(data):
    """to_block is at most the threshold-th highest to_block, and never rewinds below from-1."""
    observations, threshold, participants = data
    result = agree(observations, FROM, threshold, participants)
    assert result.from_block == FROM
    assert result.to_block >= FROM - 1
    relevant = [o for o in observations if o.from_block == FROM]
    if result.to_block >= FROM:
        covering = [o for o in relevant if o.to_block >= result.to_block]
        assert len(covering) >= threshold
    else:
        assert result.payments == ()


@examples(60)
@given(any_observations(), st.randoms(use_true_random=False))
def test_independent_of_observation_order(data, rnd):
    """Every agent applies `agree` to the same observations in its own order."""
    observations, threshold, participants = data
    expected = agree(observations, FROM, threshold, participants)
    shuffled = list(observations)
    rnd.shuffle(shuffled)
    reordered = [
        Observation(o.from_block, o.to_block, tuple(reversed(o.payments)),
                    None if o.invoices is None else tuple(reversed(o.invoices)))
        for o in shuffled
    ]
    assert agree(reordered, FROM, threshold, participants) == expected


@examples(40)
@given(any_observations())
def test_observation_and_agreement_round_trip_through_json(data):
    """The payload and synchronized-state encodings are lossless and canonical."""
    observations, threshold, participants = data
    for observation in observations:
        text = observation.to_json()
        back = Observation.from_json(text)
        assert back.to_json() == text
        assert set(back.payments) == set(observation.payments)
        assert (back.invoices is None) == (observation.invoices is None)
        assert set(back.invoices or ()) == set(observation.invoices or ())
    result = agree(observations, FROM, threshold, participants)
    assert Agreement.from_json(result.to_json()) == result


# --- honest agents ----------------------------------------------------------------


@examples(100)
@given(worlds)
def test_honest_agents_never_skip_a_payment_someone_reported(world):
    """A payment an agent reported is either agreed now or left for a later period:
    the range never moves past it unpaid while more agents could still confirm it, unless
    only so few agents list an invoice to its receiver that they may all be lying."""
    result = agree(world.observations, FROM, world.threshold, world.participants)
    agreed = set(result.payments)
    assert agreed <= set(world.payments)
    for item in world.payments:
        destination = (item.transfer.token, item.transfer.receiver)
        if listed_by(world.observations, destination) < honest_minimum(world.participants):
            continue
        if any(item in o.payments for o in world.observations):
            assert item in agreed or item.transfer.block_number > result.to_block, item


@examples(100)
@given(worlds)
def test_invoice_seen_by_only_some_agents_caps_the_range(world):
    """An invoice below threshold that agents yet to report could lift: the range stops
    before every reported payment to its (token, receiver)."""
    result = agree(world.observations, FROM, world.threshold, world.participants)
    with_invoices = [o for o in world.observations if o.invoices is not None]
    votes = Counter(i for o in with_invoices for i in o.invoices)
    missing = world.participants - len(with_invoices)
    for invoice, count in votes.items():
        if honest_minimum(world.participants) <= count < world.threshold <= count + missing:
            assert invoice not in result.invoices
            for o in world.observations:
                for item in o.payments:
                    if (item.transfer.token, item.transfer.receiver) == (invoice.token, invoice.receiver):
                        assert item.transfer.block_number > result.to_block, (invoice, item)


@examples(60)
@given(
    open_invoices(max_size=4),
    chain_logs(min_block=FROM, max_block=FROM + 8),
    st.integers(min_value=1, max_value=5),
    st.integers(min_value=FROM - 1, max_value=FROM + 8),
)
def test_identical_honest_observations_agree_on_everything(invoices, logs, participants, to_block):
    """All agents saw the same range, invoices and payments: all of it is agreed."""
    threshold = threshold_of(participants)
    payments = tuple(payment(t) for t in logs)
    observation = honest_observation(payments, invoices, to_block)
    result = agree([observation] * participants, FROM, threshold, participants)
    if to_block < FROM:
        assert result == Agreement(FROM, FROM - 1)
        return
    assert result.to_block == to_block
    destinations = {(i.token, i.receiver) for i in invoices}
    payable = {p for p in observation.payments if (p.transfer.token, p.transfer.receiver) in destinations}
    assert set(result.payments) == payable  # a transfer in another token pays no invoice: not carried
    assert list(result.invoices) == sorted(invoices)


# --- examples ---------------------------------------------------------------------


INVOICE = make_invoice(uuid="inv-1")
PAID = payment(make_transfer(block_number=104))


def test_payment_agreed_by_threshold_and_range_to_threshold_th_highest():
    """3-of-4: the 3rd highest to_block bounds the range; the payment has three votes."""
    full = Observation(FROM, 110, (PAID,), (INVOICE,))
    behind = Observation(FROM, 106, (PAID,), (INVOICE,))
    result = agree([full, full, behind, full], FROM, 3, 4)
    assert result == Agreement(FROM, 110, (PAID,), (INVOICE,))


def test_payment_reported_by_agents_behind_the_range_is_not_skipped():
    """The two agents watching a new invoice scanned to 106 and saw its payment at 104;
    the others scanned further but did not watch that receiver yet: stop before 104."""
    other = make_invoice(uuid="inv-0", receiver=RECEIVERS[1])
    watcher = Observation(FROM, 106, (PAID,), (INVOICE, other))
    others = Observation(FROM, 110, (), (other,))
    result = agree([watcher, watcher, others, others], FROM, 3, 4)
    assert result.to_block == 103
    assert result.payments == ()


def test_fake_payment_contradicted_by_watching_agents_is_dropped():
    """One agent reports a payment that three others watching the receiver did not see."""
    liar = Observation(FROM, 110, (PAID,), (INVOICE,))
    honest = Observation(FROM, 110, (), (INVOICE,))
    result = agree([liar, honest, honest, honest], FROM, 3, 4)
    assert result == Agreement(FROM, 110, (), (INVOICE,))


def test_too_few_observations_or_invoice_lists_agree_on_nothing():
    """Below threshold observations, or invoice lists, nothing is scanned."""
    full = Observation(FROM, 110, (PAID,), (INVOICE,))
    no_invoices = Observation(FROM, FROM - 1, (), None)
    assert agree([full, full], FROM, 3, 4) == Agreement(FROM, FROM - 1)
    assert agree([full, full, no_invoices], FROM, 3, 4) == Agreement(FROM, FROM - 1)
    stale = Observation(FROM - 10, 110, (PAID,), (INVOICE,))
    assert agree([full, full, stale], FROM, 3, 4) == Agreement(FROM, FROM - 1)


def test_invoice_not_yet_listed_by_every_agent_stops_the_range_before_its_payment():
    """3-of-4, three reported: two listed inv-1 and saw its payment at 104, one had not
    listed it yet, and the silent fourth could still make three: stop at 103."""
    seen = Observation(FROM, 110, (PAID,), (INVOICE,))
    not_yet = Observation(FROM, 110, (), ())
    assert agree([seen, seen, not_yet], FROM, 3, 4) == Agreement(FROM, 103, (), ())
    assert agree([seen, seen, seen], FROM, 3, 4) == Agreement(FROM, 110, (PAID,), (INVOICE,))


def test_payment_outside_its_observation_cannot_rewind_or_stop_the_range():
    """A payment outside [from_block, the observation's own to_block] is not part of it."""
    other = make_invoice(uuid="inv-0", receiver=RECEIVERS[1])
    honest = Observation(FROM, 110, (), (other,))
    for odd_block in (FROM - 5, 108):
        odd = Observation(FROM, 105, (payment(make_transfer(block_number=odd_block)),), (other,))
        assert agree([odd, honest, honest, honest], FROM, 3, 4) == Agreement(FROM, 110, (), (other,))


def test_invoice_listed_by_a_lagging_minority_holds_the_range_at_what_it_scanned():
    """Only two lagging agents list the invoice yet: nobody else watched its receiver,
    so the range must not pass what one of them surely scanned, even with no payment seen."""
    lagging, lying = Observation(FROM, 104, (), (INVOICE,)), Observation(FROM, 101, (), (INVOICE,))
    ahead = Observation(FROM, 110, (), ())
    assert agree([lagging, lagging, ahead, ahead], FROM, 3, 4) == Agreement(FROM, 104, (), ())
    assert agree_explained([lagging, lying, ahead, ahead], FROM, 3, 4) == (
        Agreement(FROM, 101, (), ()), INVOICE_NOT_SETTLED
    )


@pytest.mark.parametrize(
    "text",
    ["", "[]", "{}", '{"tokens":[],"blocks":[],"payments":[[1]],"invoices":null,"from_block":1,"to_block":2,'
     '"anchor_hash":""}',
     # a payment in a block the blocks table does not list, and a token index out of range
     '{"tokens":[],"blocks":[],"payments":[[5,0,"0x1",0,"0xa","0xb","1"]],"invoices":null,"from_block":1,'
     '"to_block":9,"anchor_hash":""}',
     '{"tokens":[],"blocks":[],"payments":[],"invoices":[["u",3,"0xb","1",null,null]],"from_block":1,'
     '"to_block":9,"anchor_hash":""}'],
)
def test_a_malformed_observation_is_a_value_error(text: str) -> None:
    """Another agent's payload that does not decode raises ValueError (the round then ignores it)."""
    with pytest.raises(ValueError, match="malformed observation"):
        Observation.from_json(text)


def test_a_thousand_settlements_fit_a_consensus_transaction() -> None:
    """1,000 payments and 1,000 open invoices: under 400 KB, so the hex-encoded transaction stays
    under the 1 MB that Tendermint's RPC reads in one request line (the devnet too)."""
    invoices = tuple(
        make_invoice(uuid=f"{n:08d}-1111-4222-8333-444455556666", receiver=address(0x10000 + n), amount=10**18)
        for n in range(1000)
    )
    payments = tuple(
        Payment(make_transfer(block_number=500 + n // 100, log_index=n % 100, tx_hash=tx_hash(n),
                              block_hash=tx_hash(10**6 + 500 + n // 100), receiver=address(0x10000 + n),
                              value=10**18), 1_700_000_000 + n // 100)
        for n in range(1000)
    )
    text = Observation(500, 520, payments, invoices, tx_hash(7)).to_json()
    assert len(text) < 400_000
    assert Observation.from_json(text) == Observation(500, 520, payments, tuple(sorted(invoices)), tx_hash(7))


# --- one adversarial observation among honest ones ---------------------------------


@st.composite
def lies(draw, honest: Observation) -> Observation:
    """What a hostile agent may report instead of `honest`: omit payments, invent an invoice and a
    payment to it, forge a payment to a watched receiver, report a tiny or a huge range."""
    kind = draw(st.sampled_from(["omit", "invent", "forge", "tiny", "huge", "no_invoices", "other_start"]))
    invented = make_invoice(uuid="inv-invented", receiver=address(0xBAD), amount=1)
    if kind == "omit":
        return replace(honest, payments=())
    if kind == "invent":
        fake = payment(make_transfer(block_number=FROM, log_index=77, receiver=invented.receiver))
        return replace(honest, to_block=FROM, payments=(fake,), invoices=(*(honest.invoices or ()), invented))
    if kind == "forge":
        receiver = draw(st.sampled_from(RECEIVERS))
        fake = payment(make_transfer(block_number=draw(st.integers(FROM, FROM + 8)), log_index=88, receiver=receiver))
        return replace(honest, payments=(*honest.payments, fake))
    if kind == "tiny":
        return replace(honest, to_block=draw(st.sampled_from([FROM - 1, FROM])), payments=())
    if kind == "huge":
        return replace(honest, to_block=FROM + 10_000)
    if kind == "no_invoices":
        return replace(honest, to_block=FROM - 1, payments=(), invoices=None)
    return replace(honest, from_block=FROM + 1)


@st.composite
def honest_with_liars(draw) -> Tuple[Observation, List[Observation], int]:
    """The honest agents' common observation and the f = n - threshold liars' reports."""
    participants = draw(st.integers(min_value=4, max_value=7))
    invoices = draw(open_invoices(max_size=4))
    payments = tuple(payment(t) for t in draw(chain_logs(min_block=FROM, max_block=FROM + 8)))
    honest = honest_observation(payments, invoices, draw(st.integers(FROM, FROM + 8)))
    liars = [draw(lies(honest)) for _ in range(participants - threshold_of(participants))]
    return honest, liars, participants


@examples(150)
@given(honest_with_liars(), st.randoms(use_true_random=False))
def test_liars_change_nothing_when_every_honest_agent_reports(data, rnd):
    """Up to f liars among n reports: the agreement is the honest agents' own, whatever they say."""
    honest, liars, participants = data
    threshold = threshold_of(participants)
    reports = [honest] * (participants - len(liars)) + liars
    rnd.shuffle(reports)
    assert agree(reports, FROM, threshold, participants) == agree([honest] * participants, FROM, threshold, participants)


def test_one_liar_cannot_halt_or_mislead_three_honest_agents():
    """The rows of the byzantine issue, on 3-of-4: each liar's report changes nothing."""
    honest = Observation(FROM, 110, (PAID,), (INVOICE,))
    expected = Agreement(FROM, 110, (PAID,), (INVOICE,))
    invented = make_invoice(uuid="inv-invented", receiver=RECEIVERS[2])
    liars = {
        "omits the payment": Observation(FROM, 110, (), (INVOICE,)),
        "invents an invoice with a short range": Observation(
            FROM, FROM, (payment(make_transfer(block_number=FROM, receiver=invented.receiver)),), (INVOICE, invented)
        ),
        "reports a tiny range": Observation(FROM, FROM - 1, (), (INVOICE,)),
        "forges a payment": Observation(FROM, 110, (PAID, payment(make_transfer(block_number=101, log_index=5))),
                                        (INVOICE,)),
    }
    for name, liar in liars.items():
        assert agree_explained([honest, liar, honest, honest], FROM, 3, 4) == (expected, ""), name


def test_why_the_range_stopped_is_said():
    """Each way the range can stop short names its reason; a full range names none."""
    full = Observation(FROM, 110, (PAID,), (INVOICE,))
    assert agree_explained([full, full], FROM, 3, 4)[1] == TOO_FEW_OBSERVATIONS
    assert agree_explained([full, full, Observation(FROM, 99, (), None)], FROM, 3, 4)[1] == TOO_FEW_INVOICE_LISTS
    unseen = Observation(FROM, 110, (), (INVOICE,))
    assert agree_explained([full, full, unseen], FROM, 3, 4) == (Agreement(FROM, 103, (), (INVOICE,)),
                                                                   PAYMENT_NOT_CONFIRMED)
    assert agree_explained([full, full, full], FROM, 3, 4)[1] == ""
    assert agree_explained([Observation(FROM, 99, (), (INVOICE,))] * 3, FROM, 3, 4) == (Agreement(FROM, 99), "")
