from calib.cli.main import main

raise SystemExit(main())
