"""Tuneboard's dashboard: a router over one page per task (see pages/)."""

from __future__ import annotations

import streamlit as st

from pages import import_once

import_once()  # before any page runs: one thread imports what the pages use (see pages/__init__.py)
st.set_page_config(page_title="Tuneboard", page_icon=":material/model_training:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/compose.py", title="Compose & launch", icon=":material/tune:"),
    st.Page("pages/jobs.py", title="Jobs", icon=":material/pending_actions:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/leaderboard:"),
    st.Page("pages/registry.py", title="Registry & promotion", icon=":material/rocket_launch:"),
    st.Page("pages/score.py", title="Score a file", icon=":material/playlist_add_check:"),
]
# Our own sidebar links: with a pages/ folder present, Streamlit can show its file-based page list on a
# session's very first request (before this script has registered the pages), so that list is switched off.
page = st.navigation(pages, position="hidden")
with st.sidebar:
    st.markdown("### Tuneboard")
    for item in pages:
        st.page_link(item)
page.run()
