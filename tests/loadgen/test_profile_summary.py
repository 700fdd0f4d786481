"""The summary `python3 dev.py profile` writes from py-spy's collapsed stacks."""

from __future__ import annotations

from bench.profile import summarise


def test_samples_are_counted_per_thread_and_function_without_the_start_up_chain(tmp_path):
    raw = tmp_path / "p.raw"
    raw.write_text(
        "thread (1): MainThread;<module> (cmk:8);Runner.run (asyncio/runners.py:118);Keys.unwrap (k.py:1);"
        "_in_thread (k.py:9) 30\n"
        "thread (1): MainThread;<module> (cmk:8);Runner.run (asyncio/runners.py:118);AuditLog._write (a.py:5) 10\n"
        "thread (2): Thread-4;RsaKeyMaterial.unwrap (c.py:152) 60\n"
    )
    report = summarise(raw, "unwrap")
    assert "100 samples" in report
    assert "    70  70.0 %  thread (1): MainThread" not in report  # 40, not 70
    assert "    40  40.0 %  thread (1): MainThread" in report and "    60  60.0 %  thread (2): Thread-4" in report
    inclusive = report.split("including what they call:")[1].split("by their own time:")[0]
    assert "Keys.unwrap (k.py:1)" in inclusive and "    30  30.0 %  Keys.unwrap" in inclusive
    assert "<module>" not in inclusive and "Runner.run" not in inclusive
    own = report.split("by their own time:")[1]
    assert "    60  60.0 %  RsaKeyMaterial.unwrap (c.py:152)" in own
