from quay_cred_helper.cli import main

raise SystemExit(main())
