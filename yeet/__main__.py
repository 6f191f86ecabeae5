from yeet.cli.main import main

main()
