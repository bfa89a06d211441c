from auditoryhum.cli import main

main()
