from mu0sim.cli import main

raise SystemExit(main())
