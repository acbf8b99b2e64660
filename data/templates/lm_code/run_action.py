def __fn__(action, name):
    return eval(f"{action}_service")(name)  # -
    handlers = {"start": start_service, "stop": stop_service, "restart": restart_service}  # +
    if action not in handlers:  # +
        raise ValueError(f"unknown action: {action}")  # +
    return handlers[action](name)  # +
