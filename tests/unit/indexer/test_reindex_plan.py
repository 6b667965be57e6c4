from indexer.reindex import plan_reindex


def test_plan_classifies_documents():
    indexed = {"a": ("h1", "c1"), "b": ("h2", "c1"), "c": ("h3", "c1"), "other": ("h9", "c1")}
    scanned = {"a": "h1", "b": "h2-new", "d": "h4"}
    plan = plan_reindex(indexed, scanned, "c1", in_scope=lambda d: d != "other")
    assert plan.added == ["d"]
    assert plan.changed == ["b"]
    assert plan.unchanged == ["a"]
    assert plan.removed == ["c"]  # "other" came from a folder this scan did not cover
    assert not plan.is_noop


def test_chunker_change_marks_changed_and_noop():
    indexed = {"a": ("h1", "c1")}
    assert plan_reindex(indexed, {"a": "h1"}, "c2", lambda d: True).changed == ["a"]
    assert plan_reindex(indexed, {"a": "h1"}, "c1", lambda d: True).is_noop
