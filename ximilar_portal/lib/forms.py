def bound_data(request, *, files=False) -> tuple:
    """Form arguments: bound on POST even when the POST is empty (an empty form
    must show its errors), unbound otherwise."""
    if request.method != "POST":
        return ()
    return (request.POST, request.FILES) if files else (request.POST,)
