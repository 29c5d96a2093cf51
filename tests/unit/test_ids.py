"""Identifier formats."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from ftserve import ids

B62 = "[0-9A-Za-z]"


def test_formats() -> None:
    assert re.fullmatch(f"ftjob-{B62}{{24}}", ids.job_id())
    assert re.fullmatch(f"ftevent-{B62}{{24}}", ids.event_id())
    assert re.fullmatch(f"file-{B62}{{24}}", ids.file_id())
    assert re.fullmatch(f"ftckpt_{B62}{{24}}", ids.checkpoint_id())
    assert (
        ids.fine_tuned_model_name("gpt-4o-mini", "personal", None, "abcdefgh")
        == "ft:gpt-4o-mini:personal::abcdefgh"
    )
    assert ids.fine_tuned_model_name("m", "org", "sfx", "abcdefgh") == "ft:m:org:sfx:abcdefgh"


def test_event_ids_only_grow_even_across_threads() -> None:
    def batch(_: int) -> list[str]:
        return [ids.event_id() for _ in range(2000)]

    with ThreadPoolExecutor(4) as pool:
        per_thread = list(pool.map(batch, range(4)))
    for seq in per_thread:
        assert seq == sorted(seq)
    everything = [i for seq in per_thread for i in seq]
    assert len(set(everything)) == len(everything)
