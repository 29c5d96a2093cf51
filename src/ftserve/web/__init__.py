"""The web dashboard: server-rendered pages, a hand-written script and a stylesheet."""
