"""The demo-chaos scorecard: merchant receipts + chain truth -> the table's numbers (pure)."""

from settleproof.scorecard import Invoice, Receipt, Score, Transfer, format_table, score, true_settlements

TOKEN = "0x" + "70" * 20
SHOP, OTHER, PAYER = "0x" + "51" * 20, "0x" + "52" * 20, "0x" + "aa" * 20


def log(tx: str, block: int, to: str = SHOP, value: int = 1000, sender: str = PAYER, index: int = 0) -> Transfer:
    """A Transfer of the token."""
    return Transfer(tx, block, index, TOKEN, sender, to, value)


def test_truth_is_one_to_one_earliest_first_ties_by_uuid() -> None:
    """Equal invoices: the lower uuid takes the first payment; a second payment of a settled one settles nothing."""
    invoices = [Invoice("b", TOKEN, SHOP, 1000), Invoice("a", TOKEN, SHOP, 1000), Invoice("c", TOKEN, OTHER, 1000)]
    logs = [log("0x2", 6, OTHER), log("0x1", 5), log("0x3", 7, OTHER)]
    assert true_settlements(invoices, logs) == {"a": "0x1", "c": "0x2"}


def test_truth_honours_amount_payer_created_block_and_token() -> None:
    """Too little, the wrong payer, too early or another token pay nothing."""
    invoices = [
        Invoice("small", TOKEN, SHOP, 2000),
        Invoice("payer", TOKEN, OTHER, 1000, payer="0x" + "bb" * 20),
        Invoice("late", TOKEN, "0x" + "53" * 20, 1000, created_block=9),
    ]
    logs = [log("0x1", 5), log("0x2", 5, OTHER, index=1), log("0x3", 9, "0x" + "53" * 20),
            Transfer("0x4", 10, 0, "0x" + "71" * 20, PAYER, SHOP, 5000)]
    assert not true_settlements(invoices, logs)
    assert true_settlements(invoices, [log("0x5", 10, "0x" + "53" * 20)]) == {"late": "0x5"}


def test_score_counts_each_kind_of_mistake() -> None:
    """Correct, fabricated, wrong-invoice, lost, re-sent under new ids, unverifiable."""
    truth = {"inv1": "0xAA", "inv2": "0xbb", "inv3": "0xcc"}
    receipts = [
        Receipt("e1", "inv1", "0xaa", False),
        Receipt("e1", "inv1", "0xaa", False),  # a retry under the same id: not a duplicate
        Receipt("e2", "inv1", "0xaa", False),  # the same payment under a new id
        Receipt("e3", "inv1", "0xaa", False),  # and another
        Receipt("e4", "inv0", "0xfake", False),  # fabricated: not on chain
        Receipt("e5", "inv4", "0xbb", False),  # a real payment, the wrong invoice
        Receipt("e6", "inv2", "0xbb", True),
        Receipt(None, None, None, False),  # a rejected request: it claims nothing we can read
    ]
    assert score(receipts, truth) == Score(
        invoices_paid=3, settled_correctly=2, false_settlements=2, lost_events=1,
        duplicate_new_ids=2, unverifiable=7,
    )


def test_a_clean_run_scores_zero_mistakes() -> None:
    """Verified, one id per payment, nothing else."""
    truth = {"inv1": "0xaa", "inv2": "0xbb"}
    receipts = [Receipt("inv1:0xaa", "inv1", "0xaa", True), Receipt("inv2:0xbb", "inv2", "0xbb", True)]
    assert score(receipts, truth) == Score(2, 2, 0, 0, 0, 0)


def test_table_has_one_row_per_metric_and_one_column_per_run() -> None:
    """Labels on the left, a column per run."""
    table = format_table({"baseline": Score(3, 2, 4, 1, 5, 9), "SettleProof": Score(3, 3, 0, 0, 0, 0)})
    lines = table.splitlines()
    assert lines[0].split() == ["baseline", "SettleProof"]
    assert lines[3].split()[-2:] == ["4", "0"] and "false settlements" in lines[3]
    assert len(lines) == 7
