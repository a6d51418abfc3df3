from entload.cli import main

raise SystemExit(main())
