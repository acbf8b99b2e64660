from jinja2 import Environment, FileSystemLoader

env = Environment(loader=FileSystemLoader("templates"))  # -
env = Environment(loader=FileSystemLoader("templates"), autoescape=True)  # +


def __fn__(user):
    return env.get_template("profile.html").render(user=user)
