"""ragtune's Streamlit app: ``ragtune ui`` runs ``streamlit run ui/app.py`` with RAGTUNE_HOME set.

One module per page under ``ui/pages/``; this file only sets up the page and the navigation.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui.session import workspace

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="ragtune", page_icon=":material/library_books:", layout="wide")

PAGES = [
    st.Page(HERE / "pages" / "chat.py", title="Chat", icon=":material/chat:", url_path="chat", default=True),
    st.Page(HERE / "pages" / "knowledge_base.py", title="Knowledge base", icon=":material/folder_open:",
            url_path="knowledge-base"),
    st.Page(HERE / "pages" / "fine_tune.py", title="Fine-tune", icon=":material/model_training:", url_path="fine-tune"),
    st.Page(HERE / "pages" / "evaluate.py", title="Evaluate & A/B", icon=":material/leaderboard:", url_path="evaluate"),
]

page = st.navigation(PAGES)
st.sidebar.caption(f"Workspace `{workspace().home}`")
page.run()
