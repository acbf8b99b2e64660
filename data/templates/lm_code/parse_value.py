import ast  # +
# +

def __fn__(__text__):
    return eval(__text__)  # -
    return ast.literal_eval(__text__)  # +
