from aiaas.cli import main

main()
