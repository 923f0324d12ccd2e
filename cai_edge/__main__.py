from cai_edge.cli import main

raise SystemExit(main())
