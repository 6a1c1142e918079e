from kadtalk.cli import main

raise SystemExit(main())
