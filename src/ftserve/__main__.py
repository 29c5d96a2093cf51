from ftserve.cli.main import main

main()
