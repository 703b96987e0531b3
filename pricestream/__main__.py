from pricestream.cli import main

raise SystemExit(main())
