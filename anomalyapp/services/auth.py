"""Accounts, roles and permissions of a project, on top of its records database.

Roles. Two, with an explicit permission table (``PERMISSIONS``): an *operator* inspects and labels; a
*supervisor* may also train, move and apply the threshold, roll the model back, manage users and switch
single-user mode and change project settings. Use cases call ``require(user, permission)``, which raises ``PermissionDenied`` with a
sentence a person understands ("operator Anna may not change the threshold").

Passwords. Hashed with Argon2id (argon2-cffi's ``PasswordHasher``: salted, memory-hard); the policy asks
for at least 8 characters with an upper-case letter, a lower-case letter and a digit. A failed login says
"wrong user name or password" whatever was wrong (unknown name, wrong password, deactivated account) and
takes the same time: an unknown name is checked against a dummy hash.

First run. A project without accounts asks for its first supervisor (``needs_first_user`` then
``create_first_supervisor``); afterwards only a supervisor adds accounts.

Single-user mode. For a station run by one person. A supervisor switches it on; from then on the app
starts already logged in as *that supervisor* (``auto_login``), with no login prompt, and every record is
attributed to that account. Only a supervisor switches it off again, and it lapses by itself (the login
prompt comes back) when that account is deactivated or is no longer a supervisor. Other accounts stay as
they are; they simply are not asked for.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from anomalyapp.core.errors import AppError
from anomalyapp.store.records import ROLES, RecordStore, User

OPERATOR, SUPERVISOR = "operator", "supervisor"
INSPECT, LABEL = "inspect", "label"
TRAIN, CHANGE_THRESHOLD, APPLY_THRESHOLD, ROLLBACK = "train", "change_threshold", "apply_threshold", "rollback"
MANAGE_USERS, SWITCH_SINGLE_USER, CHANGE_SETTINGS = "manage_users", "switch_single_user", "change_settings"

PERMISSIONS: dict[str, frozenset[str]] = {
    OPERATOR: frozenset({INSPECT, LABEL}),
    SUPERVISOR: frozenset(
        {INSPECT, LABEL, TRAIN, CHANGE_THRESHOLD, APPLY_THRESHOLD, ROLLBACK, MANAGE_USERS, SWITCH_SINGLE_USER,
         CHANGE_SETTINGS}
    ),
}
# How each permission reads in "operator Anna may not ...".
_ACTIONS = {
    INSPECT: "inspect images",
    LABEL: "label inspections",
    TRAIN: "train or change the model",
    CHANGE_THRESHOLD: "change the threshold",
    APPLY_THRESHOLD: "apply a new threshold",
    ROLLBACK: "roll the model back",
    MANAGE_USERS: "manage users",
    SWITCH_SINGLE_USER: "switch single-user mode",
    CHANGE_SETTINGS: "change project settings",
}

SINGLE_USER = "single_user"  # settings key: "1" when on
SINGLE_USER_ID = "single_user_id"  # settings key: the account that single-user mode logs in
MIN_PASSWORD_LENGTH = 8
LOGIN_FAILED = "wrong user name or password"


class PermissionDenied(AppError):
    """The user's role does not allow this action."""


class AuthError(AppError):
    """A login that failed, or an account request that breaks a rule (password policy, duplicate name)."""


def can(user: User | None, permission: str) -> bool:
    if permission not in _ACTIONS:
        raise ValueError(f"unknown permission {permission!r}")
    return user is not None and user.active and permission in PERMISSIONS.get(user.role, frozenset())


def require(user: User | None, permission: str) -> None:
    """Raise ``PermissionDenied`` unless ``user`` may do ``permission``."""
    if can(user, permission):
        return
    action = _ACTIONS[permission]
    if user is None:
        raise PermissionDenied(f"log in to {action}")
    if not user.active:
        raise PermissionDenied(f"the account of {user.name} is deactivated and may not {action}")
    raise PermissionDenied(f"{user.role} {user.name} may not {action}")


def password_problems(password: str) -> list[str]:
    """What the password lacks under the policy; empty when it is acceptable."""
    missing = []
    if len(password) < MIN_PASSWORD_LENGTH:
        missing.append(f"at least {MIN_PASSWORD_LENGTH} characters")
    if not any(ch.isupper() for ch in password):
        missing.append("an upper-case letter")
    if not any(ch.islower() for ch in password):
        missing.append("a lower-case letter")
    if not any(ch.isdigit() for ch in password):
        missing.append("a digit")
    return missing


def check_password_policy(password: str) -> None:
    missing = password_problems(password)
    if missing:
        raise AuthError("the password needs " + _join(missing))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class AuthService:
    """Accounts of one project. Thread-safe as far as the store is (one connection per thread)."""

    def __init__(self, store: RecordStore, hasher: PasswordHasher | None = None):
        self.store = store
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash = None

    # -- first run and login ----------------------------------------------------------------------

    def needs_first_user(self) -> bool:
        return self.store.user_count() == 0

    def create_first_supervisor(self, name: str, password: str) -> User:
        if not self.needs_first_user():
            raise AuthError("this project already has accounts; a supervisor adds new ones")
        check_password_policy(password)
        with self.store.transaction():
            if not self.needs_first_user():  # re-checked under the write lock
                raise AuthError("this project already has accounts; a supervisor adds new ones")
            return self._add(name, password, SUPERVISOR, actor=None)

    def authenticate(self, name: str, password: str) -> User:
        """The active account with this name and password; else ``AuthError("wrong user name or password")``."""
        found = self.store.credentials(name)
        if found is None:
            self._verify(self._dummy(), password)  # the same work as a real check: no timing hint
            raise AuthError(LOGIN_FAILED)
        user, stored = found
        if not self._verify(stored, password) or not user.active:
            raise AuthError(LOGIN_FAILED)
        if self._needs_rehash(stored):
            self.store.set_password_hash(user.id, self._hasher.hash(password), actor_id=user.id,
                                         action="password_rehashed")
        return user

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash("dummy password, never matches")
        return self._dummy_hash

    # -- accounts ---------------------------------------------------------------------------------

    def users(self) -> list[User]:
        return self.store.users()

    def add_user(self, actor: User, name: str, password: str, role: str = OPERATOR) -> User:
        require(actor, MANAGE_USERS)
        check_password_policy(password)
        return self._add(name, password, role, actor)

    def _add(self, name: str, password: str, role: str, actor: User | None) -> User:
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r} (use operator or supervisor)")
        if not name.strip():
            raise AuthError("a user name cannot be empty")
        if self.store.credentials(name) is not None:
            raise AuthError(f"a user named {name.strip()!r} already exists (names ignore case)")
        return self.store.add_user(name, role, self._hasher.hash(password), actor_id=actor.id if actor else None)

    def set_password(self, actor: User, user_id: int, new_password: str, old_password: str | None = None) -> None:
        """A supervisor sets anybody's password; anyone changes their own, giving the old one."""
        if actor.id == user_id and not can(actor, MANAGE_USERS):
            found = self.store.credentials(actor.name)
            if old_password is None or found is None or not self._verify(found[1], old_password):
                raise AuthError("the current password is wrong")
        else:
            require(actor, MANAGE_USERS)
        check_password_policy(new_password)
        self.store.set_password_hash(user_id, self._hasher.hash(new_password), actor_id=actor.id)

    def set_role(self, actor: User, user_id: int, role: str) -> User:
        require(actor, MANAGE_USERS)
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r} (use operator or supervisor)")
        with self.store.transaction():
            if role != SUPERVISOR:
                self._keep_a_supervisor(user_id)
            return self.store.set_role(user_id, role, actor_id=actor.id)

    def deactivate_user(self, actor: User, user_id: int) -> User:
        require(actor, MANAGE_USERS)
        with self.store.transaction():
            self._keep_a_supervisor(user_id)
            return self.store.set_active(user_id, False, actor_id=actor.id)

    def reactivate_user(self, actor: User, user_id: int) -> User:
        require(actor, MANAGE_USERS)
        return self.store.set_active(user_id, True, actor_id=actor.id)

    def _keep_a_supervisor(self, user_id: int) -> None:
        """Refuse to demote or deactivate the last active supervisor: nobody could manage the project."""
        others = [u for u in self.store.users() if u.active and u.is_supervisor and u.id != user_id]
        target = self.store.user(user_id)
        if target is not None and target.active and target.is_supervisor and not others:
            raise AuthError(f"{target.name} is the last active supervisor; make someone else supervisor first")

    # -- single-user mode -------------------------------------------------------------------------

    def single_user_mode(self) -> bool:
        return self.store.get_setting(SINGLE_USER) == "1"

    def set_single_user_mode(self, actor: User, enabled: bool) -> None:
        """On: the app logs in as ``actor`` (a supervisor) without asking. Off: the login comes back."""
        require(actor, SWITCH_SINGLE_USER)
        with self.store.transaction():
            self.store.set_setting(SINGLE_USER_ID, str(actor.id) if enabled else None, user_id=actor.id)
            self.store.set_setting(SINGLE_USER, "1" if enabled else None, user_id=actor.id)

    def auto_login(self) -> User | None:
        """The account single-user mode logs in, or None when a login is needed."""
        if not self.single_user_mode():
            return None
        value = self.store.get_setting(SINGLE_USER_ID)
        user = self.store.user(int(value)) if value else None
        if user is None or not user.active or not user.is_supervisor:
            return None
        return user
