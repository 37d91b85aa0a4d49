from emoguide.cli import app

app()
