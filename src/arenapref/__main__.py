from arenapref.cli.app import main

main()
