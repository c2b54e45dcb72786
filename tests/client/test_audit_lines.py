"""The audit figures as `lethe version` prints them, from reports shaped as the library writes them."""

from service.cli.audit import audit_lines

DONE = {"mode": "full", "status": "done", "leak_rate": 0.0, "leak_rate_original": 0.875, "attack_success": 0.1875,
        "attack_success_original": 1.0, "neighbour_accuracy": 1.0, "neighbour_accuracy_original": 1.0,
        "spread_ratio": None, "about": {"spread_ratio": {"means": "...", "better": "near 1"}}}


def test_each_figure_with_the_originals_and_which_way_is_good():
    lines = audit_lines({"audit": DONE})
    assert lines[0] == "audit: full, done"
    assert lines[1].split() == ["leak", "rate", "0.00", "(original", "0.88)", "lower", "is", "better"]
    assert lines[2].split() == ["attack", "success", "0.19", "(original", "1.00)", "lower", "is", "better"]
    assert lines[3].split() == ["neighbours", "kept", "1.00", "(original", "1.00)", "higher", "is", "better"]
    assert lines[4].split() == ["spread", "ratio", "n/a", "near", "1", "is", "better"]  # undefined: null


def test_an_audit_that_could_not_run_is_its_warning_and_none_is_said():
    warned = {"mode": "quick", "status": "not_applicable", "warning": "audit skipped: the original model does not "
                                                                        "seem to draw 'eleven'. ..."}
    assert audit_lines({"audit": warned}) == [f"audit: quick, not_applicable: {warned['warning']}"]
    assert audit_lines({"audit": {"mode": "off"}}) == ["audit: off"]
    assert audit_lines(None)[0].startswith("audit: none")
