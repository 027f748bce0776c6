from aedr.cli import main

raise SystemExit(main())
