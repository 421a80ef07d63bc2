from prsm.cli import main

main()
