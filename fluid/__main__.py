from fluid.cli import main

main()
