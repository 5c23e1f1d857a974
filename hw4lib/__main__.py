from hw4lib.cli import main

raise SystemExit(main())
