from .roles import is_operator, is_reviewer, role_of


def roles(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"role": None, "is_operator": False, "is_reviewer": False}
    return {
        "role": role_of(user),
        "is_operator": is_operator(user),
        "is_reviewer": is_reviewer(user),
    }
