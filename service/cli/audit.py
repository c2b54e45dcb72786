"""A version's audit report (`evaluation.audit`, unlearning/audit/) as lines for the terminal.

Each figure is shown with the original model's where the report has it, and which way is good
(the report's own `about`, else the README's word for it).
"""

from __future__ import annotations

# (figure, label, the original's figure or None, which way is good when the report does not say)
FIGURES = (
    ("leak_rate", "leak rate", "leak_rate_original", "lower"),
    ("attack_success", "attack success", "attack_success_original", "lower"),
    ("neighbour_accuracy", "neighbours kept", "neighbour_accuracy_original", "higher"),
    ("spread_ratio", "spread ratio", None, "near 1"),
)


def audit_lines(evaluation: dict | None) -> list[str]:
    """`audit: ...` and, when it ran, one line per figure."""
    audit = (evaluation or {}).get("audit")
    if not isinstance(audit, dict):
        return ["audit: none (a base, or a version made before audits)"]
    if audit.get("mode") == "off":
        return ["audit: off"]
    if audit.get("status") != "done":
        return [f"audit: {audit.get('mode')}, {audit.get('status')}: {audit.get('warning', 'no figures')}"]
    about = audit.get("about") or {}
    return [f"audit: {audit.get('mode')}, done"] + [
        _figure_line(audit, name, label, original, (about.get(name) or {}).get("better", better))
        for name, label, original, better in FIGURES
    ]


def _figure_line(audit: dict, name: str, label: str, original: str | None, better: str) -> str:
    with_original = f"(original {_number(audit.get(original))})" if original in audit else ""
    return f"  {label:<16}{_number(audit.get(name)):>6}  {with_original:<16}{better} is better"


def _number(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"
