"""ragtune: cited answers from your documents, in your style.

The public objects are few: ``KnowledgeBase`` (retrieval), ``ingest_paths`` (ingest),
``train_adapter`` (finetune), ``Assistant`` (assistant) and ``run_evaluation`` (evaluation).
They are imported from their packages; this package holds the workspace and the CLI.
"""

__version__ = "0.1.0"
