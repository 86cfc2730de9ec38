"""bench/stacks.py: py-spy's collapsed stacks summed by the gateway's thread groups and frames."""

from bench.stacks import render_profile, summarise

RAW = [
    "thread (0x7f00): MainThread;main (gateway/__main__.py:58);Runner.run (runners.py:118) 30",
    "thread (0x7f01): preprocess_0;_worker (thread.py:93);resize_rgb (gateway/resize.py:40) 25",
    "thread (0x7f02): preprocess_1;_worker (thread.py:93);resize_rgb (gateway/resize.py:40) 15",
    "thread (0x7f02): preprocess_1;_worker (thread.py:93);ImageFile.load (PIL/ImageFile.py:300) 10",
    "thread (0x7f03): embedded-model_0;SignatureRunner.__call__ (ai_edge_litert/x.py:10) 120",
    "",
    "a line that is not a stack",
]


def test_pool_workers_are_one_group_and_frames_lose_their_location() -> None:
    profile = summarise(RAW)
    assert profile.total == 200
    assert profile.by_group == {"MainThread": 30, "preprocess": 50, "embedded-model": 120}
    assert profile.by_frame[("preprocess", "resize_rgb")] == 40
    assert profile.by_frame[("preprocess", "ImageFile.load")] == 10
    assert profile.share("embedded-model") == 0.6


def test_the_table_gives_cores_and_cpu_per_request() -> None:
    # 200 samples over 1 s at 200 Hz: one core; the preprocess group's 50 are a quarter
    # core, which at 50 requests a second is 5 ms of CPU per request.
    text = render_profile(summarise(RAW), per_second=50.0, seconds=1.0, rate_hz=200)
    row = next(line for line in text.splitlines() if line.startswith("| preprocess "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:4] == ["preprocess", "25.0%", "0.25", "5.00"]
    assert cells[4].startswith("`resize_rgb` 20.0%, `ImageFile.load` 5.0%")
