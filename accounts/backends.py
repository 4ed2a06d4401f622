"""Log in with an e-mail address in any case: sign-up and invitations store it lower-cased, but people type
`Dana.Smith@Example.com`, and operators may have created users whose username has capitals."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend


class EmailBackend(ModelBackend):
    """ModelBackend matching the username case-insensitively (the dashboard's login and the admin's).

    An exact match wins, so two legacy usernames differing only in case each still log in with their own
    spelling; any other spelling of such a pair matches neither rather than guessing.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        User = get_user_model()
        if username is None:
            username = kwargs.get(User.USERNAME_FIELD)
        if username is None or password is None:
            return None
        username = username.strip()
        candidates = list(User._default_manager.filter(**{f"{User.USERNAME_FIELD}__iexact": username})[:10])
        user = next((u for u in candidates if u.get_username() == username), None)
        if user is None and len(candidates) == 1:
            user = candidates[0]
        if user is None:
            User().set_password(password)  # as ModelBackend: an unknown name costs one hash too
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None
