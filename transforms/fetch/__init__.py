"""Fetching audio that is not in storage yet: web URLs, YouTube (yt-dlp), Freesound previews.

Per-request logic without Beam: :mod:`.http` (the HTTP client: timeouts, retries, the byte cap,
redirect rules), :mod:`.limits` (per-host concurrency and rate), :mod:`.cache` (the content-addressed
cache), :mod:`.status` (the status table), :mod:`.youtube`, :mod:`.freesound`, and :mod:`.batch`, which
fetches one status shard's rows. The Beam stage is pipeline/stages/fetch.py.
"""
