from fluid.cli import app

app(prog_name="fluid")
