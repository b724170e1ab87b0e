from esgf_ha.cli.main import main

main()
