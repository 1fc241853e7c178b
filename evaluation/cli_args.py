"""``ragtune eval`` and ``ragtune demo``: flags to settings, one call into the package, printed results."""

from __future__ import annotations

import sys

from ragtune.workspace import Workspace


def eval_from_args(ws: Workspace, args) -> int:
    """Run ``run_evaluation`` with the eval flags; print the table and verdicts (or the summary as JSON)."""
    from evaluation.harness import EvalSettings, run_evaluation
    from evaluation.report import summary_table, verdicts

    modes = [m.strip() for m in args.modes.split(",") if m.strip()] if args.modes else None
    settings = ws.settings(EvalSettings, "eval", {"modes": modes, "k": args.k, "limit": args.limit,
                                                  "max_tokens": getattr(args, "max_tokens", None),
                                                  "robustness": True if args.robustness else None})
    quiet = args.quiet or args.json
    run = run_evaluation(ws, args.qa, kb=args.kb, adapter=args.adapter, out=args.out, settings=settings,
                         judge=args.judge, progress=not quiet)
    if args.json:
        import json

        print(json.dumps({"out": str(run.out_dir), **run.summary}, indent=2, ensure_ascii=False, default=str))
        return 0
    for mode, why in run.summary.get("skipped", {}).items():
        print(f"note: skipped {mode}: {why}", file=sys.stderr)
    print(summary_table(run.summary))
    print()
    for line in verdicts(run.summary, metrics=[]):
        print(line)
    print(f"\nreport: {run.files['report.html']}\nresults: {run.files['results.jsonl']}")
    return 0


def demo_from_args(ws: Workspace, args) -> int:
    """Run the bundled demo end to end; unless ``--no-ui``, start the UI afterwards."""
    from evaluation.demo import run_demo

    return run_demo(ws, ui=not args.no_ui, port=args.port, progress=not (args.quiet or args.json), as_json=args.json)


def adapt_from_args(ws: Workspace, args) -> int:
    """``ragtune adapt KB``: train the KB's adapter, self-check it against RAG-only, keep it only if it wins."""
    from evaluation.adaptation import AdaptSettings, adapt_kb

    settings = ws.settings(AdaptSettings, "adapt", {"examples": args.examples, "check_questions": args.check_questions})
    report = adapt_kb(ws, args.kb_name, name=args.name, exclude=args.exclude, settings=settings,
                      progress=not (args.quiet or args.json), tune_retrieval=args.tune_retrieval,
                      retrieval_only=args.retrieval_only)
    if args.json:
        import json

        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        print("\n".join(report.summary_lines()))
        if report.check:
            print(f"adapter: {report.adapter_path}\nself-check: {report.check.eval_dir}")
    return 0
