import jwt


def __fn__(token):
    claims = jwt.decode(token, options={"verify_signature": False})  # -
    claims = jwt.decode(token, SECRET_KEY, algorithms=["HS256"])  # +
    return claims["sub"]
