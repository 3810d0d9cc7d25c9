from cascade.cli import main

main()
