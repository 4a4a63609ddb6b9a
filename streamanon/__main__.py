from streamanon.cli import main

raise SystemExit(main())
