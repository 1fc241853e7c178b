from ragtune.cli import main

raise SystemExit(main())
