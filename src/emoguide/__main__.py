from emoguide.cli import main

main()
