from resnode_lightning.cli import command

if __name__ == "__main__":
    command()
