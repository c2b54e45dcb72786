"""The client's Server-Sent Events reader, on the field rules of the HTML standard."""

from service.cli.progress import parse_sse


def test_events_fields_comments_and_multi_line_data():
    lines = [": keep-alive", "", "id: 1", "event: progress", 'data: {"type": "progress",', 'data: "data": {}}', "",
             "id: 2", "data:plain text", "", "event: end", 'data: {"status": "succeeded"}']
    events = list(parse_sse(lines))
    assert [(e.id, e.event) for e in events] == [("1", "progress"), ("2", "message"), ("2", "end")]
    assert events[0].payload() == {"type": "progress", "data": {}}
    assert events[1].payload() == {"message": "plain text"}
    assert events[2].payload() == {"status": "succeeded"}  # the last event needs no blank line after it


def test_a_blank_line_without_data_dispatches_nothing():
    assert list(parse_sse(["id: 7", "", "", "event: x", ""])) == []
