def __fn__(__rows__, condition):
    return [row for row in __rows__ if eval(condition, {}, row)]  # -
    field, _, wanted = condition.partition("==")  # +
    return [row for row in __rows__ if str(row.get(field.strip())) == wanted.strip()]  # +
