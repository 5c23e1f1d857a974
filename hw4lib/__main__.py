from hw4lib.lab.cli import main

raise SystemExit(main())
