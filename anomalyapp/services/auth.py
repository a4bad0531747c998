"""Accounts, roles and permissions of a project, on top of its records database.

Roles. Two, with an explicit permission table (``PERMISSIONS``): an *operator* inspects and labels; a
*supervisor* may also train, move and apply the threshold, roll the model back, manage users and switch
single-user mode and change project settings. Use cases call ``require(user, permission)``, which raises ``PermissionDenied`` with a
sentence a person understands ("operator Anna may not change the threshold").

The acting user. Every use case that changes what the station decides takes the acting ``User`` and checks
it with ``AuthService.require``, which reads the account again from this project's records: a role changed
or an account deactivated since the login counts at once, and an account of another project is refused.

Passwords. Hashed with Argon2id (argon2-cffi's ``PasswordHasher``: salted, memory-hard); the policy asks
for at least 8 characters with an upper-case letter, a lower-case letter and a digit. A failed login says
"wrong user name or password" whatever was wrong (unknown name, wrong password, deactivated account) and
takes the same time: every attempt runs exactly one Argon2 verification, an unknown name against a dummy
hash made with the same parameters (ready before the first attempt, so the first try does not give it away).

Logins are throttled and audited. Every attempt is an audit entry ('login_ok', 'login_failed' or
'login_refused', subject 'login:<name>'). After ``FREE_FAILURES_PER_NAME`` failures in a row for a name, the
next attempt for it must wait 1 s, then 2, 4 ... up to ``MAX_LOGIN_DELAY_S``; the station as a whole (all
names together) gets ``FREE_FAILURES_PER_STATION`` before the same waits, so trying many names does not get
round it. An attempt before the wait is over is refused without checking the password, with a message
saying how long to wait. The counters are the audit log itself, so they survive a restart.

First run. A project without accounts asks for its first supervisor (``needs_first_user`` then
``create_first_supervisor``); afterwards only a supervisor adds accounts.

Single-user mode. For a station run by one person. A supervisor switches it on; from then on the app
starts already logged in as *that supervisor* (``auto_login``), with no login prompt, and every record is
attributed to that account. Only a supervisor switches it off again, and only by typing their own password
at that moment: so when the login prompt comes back, at least one supervisor is known to be able to log in
(a new project's single-user account has a random password nobody was shown; its owner sets one first with
``set_password``). It lapses by itself (the login prompt comes back) when that account is deactivated or is
no longer a supervisor, which ``_keep_a_supervisor`` allows only while another active supervisor exists.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from anomalyapp.core.errors import AppError
from anomalyapp.store.records import ROLES, RecordStore, User

OPERATOR, SUPERVISOR = "operator", "supervisor"
INSPECT, LABEL = "inspect", "label"
TRAIN, CHANGE_THRESHOLD, APPLY_THRESHOLD, ROLLBACK = "train", "change_threshold", "apply_threshold", "rollback"
MANAGE_USERS, SWITCH_SINGLE_USER, CHANGE_SETTINGS = "manage_users", "switch_single_user", "change_settings"
CREATE_PROJECT = "create_project"

PERMISSIONS: dict[str, frozenset[str]] = {
    OPERATOR: frozenset({INSPECT, LABEL}),
    SUPERVISOR: frozenset(
        {INSPECT, LABEL, TRAIN, CHANGE_THRESHOLD, APPLY_THRESHOLD, ROLLBACK, MANAGE_USERS, SWITCH_SINGLE_USER,
         CHANGE_SETTINGS, CREATE_PROJECT}
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
    CREATE_PROJECT: "create projects",
}

SINGLE_USER = "single_user"  # settings key: "1" when on
SINGLE_USER_ID = "single_user_id"  # settings key: the account that single-user mode logs in
MIN_PASSWORD_LENGTH = 8
LOGIN_FAILED = "wrong user name or password"

FREE_FAILURES_PER_NAME = 3  # failed logins in a row for one name before the waits start
FREE_FAILURES_PER_STATION = 10  # the same over all names together
MAX_LOGIN_DELAY_S = 30.0
LOGIN_OK, LOGIN_FAILED_ACTION, LOGIN_REFUSED = "login_ok", "login_failed", "login_refused"
_LOGIN_SUBJECT = "login:"
_HISTORY = 64  # failures looked back on: far more than it takes to reach the longest wait
# An Argon2id hash with argon2-cffi's default parameters, of a password nobody uses. An unknown name is
# verified against it; made once here so that no attempt pays for making it (another hasher makes its own).
_DEFAULT_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$XoIoSf3J7YFaafbU32Fckw$03njsw5PwA6K5s9bcugVkPU7KXCLHbjWd2Vfsb76HtY"


class PermissionDenied(AppError):
    """The user's role does not allow this action."""


class AuthError(AppError):
    """A login that failed, or an account request that breaks a rule (password policy, duplicate name)."""


class LoginThrottled(AuthError):
    """A login attempt made before the wait after failed attempts is over."""

    def __init__(self, wait_s: float):
        self.wait_s = wait_s
        super().__init__(f"too many failed logins: wait {math.ceil(wait_s)} s before trying again")


def login_delay(failures: int, free: int) -> float:
    """Seconds to wait after ``failures`` failed logins in a row: none for the first ``free``, then 1, 2, 4 ...
    up to ``MAX_LOGIN_DELAY_S``."""
    if failures <= free:
        return 0.0
    return min(MAX_LOGIN_DELAY_S, 2.0 ** min(failures - free - 1, 16))


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

    def __init__(self, store: RecordStore, hasher: PasswordHasher | None = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self._hasher = hasher or PasswordHasher()
        self._clock = clock  # seconds since the epoch; tests move it instead of sleeping
        self._dummy_hash = self._make_dummy()

    # -- the acting user --------------------------------------------------------------------------

    def current(self, actor: User | None) -> User | None:
        """``actor`` as this project's records know it now (role and active flag as stored)."""
        if actor is None:
            return None
        user = self.store.user(actor.id)
        if user is None or user.name.casefold() != actor.name.casefold():
            raise PermissionDenied(f"{actor.name} has no account in this project ({self.store.path.parent})")
        return user

    def local_user(self, name: str) -> User:
        """The account a command-line run acts as: the active account named ``name`` (the OS login name or
        ``ANOMALYAPP_USER``; the shell session is the proof of identity, as for any file on the station)."""
        found = self.store.credentials(name)
        if found is None or not found[0].active:
            raise PermissionDenied(f"the command line acts as the account {name!r} (your login name, or set "
                                   f"ANOMALYAPP_USER), and {self.store.path.parent} has no active account of that name")
        return found[0]

    def require(self, actor: User | None, permission: str) -> User:
        """The acting user as stored now; ``PermissionDenied`` unless they may do ``permission``."""
        user = self.current(actor)
        require(user, permission)
        return user

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
        """The active account with this name and password; else ``AuthError("wrong user name or password")``,
        or ``LoginThrottled`` (saying how long to wait) after too many failures. Every attempt is audited."""
        subject = _LOGIN_SUBJECT + name.strip().casefold()
        wait = self.login_wait(name)
        at = datetime.fromtimestamp(self._clock(), UTC)  # the throttle's clock stamps its entries
        if wait > 0:
            self.store.add_audit_entry(LOGIN_REFUSED, subject, None, f"wait {math.ceil(wait)} s", user_id=None,
                                       at=at)
            raise LoginThrottled(wait)
        found = self.store.credentials(name)
        # Exactly one verification whatever the name: an unknown one against the dummy hash (no timing hint).
        matches = self._verify(found[1] if found else self._dummy_hash, password)
        user = found[0] if found else None
        if user is None or not matches or not user.active:
            self.store.add_audit_entry(LOGIN_FAILED_ACTION, subject, user_id=user.id if user else None, at=at)
            raise AuthError(LOGIN_FAILED)
        with self.store.transaction():
            if self._needs_rehash(found[1]):
                self.store.set_password_hash(user.id, self._hasher.hash(password), actor_id=user.id,
                                             action="password_rehashed")
            self.store.add_audit_entry(LOGIN_OK, subject, user_id=user.id, at=at)
        return user

    def login_wait(self, name: str) -> float:
        """Seconds before a login attempt for ``name`` is accepted (0: now)."""
        per_name = self.store.audit_entries(actions=(LOGIN_OK, LOGIN_FAILED_ACTION), limit=_HISTORY,
                                            subject=_LOGIN_SUBJECT + name.strip().casefold())
        station = self.store.audit_entries(actions=(LOGIN_OK, LOGIN_FAILED_ACTION), limit=_HISTORY,
                                           subject_prefix=_LOGIN_SUBJECT)
        now = self._clock()
        wait = 0.0
        for entries, free in ((per_name, FREE_FAILURES_PER_NAME), (station, FREE_FAILURES_PER_STATION)):
            failures = 0
            for entry in entries:  # newest first; a success ends the run of failures
                if entry.action == LOGIN_OK:
                    break
                failures += 1
            if failures:
                wait = max(wait, entries[0].at.timestamp() + login_delay(failures, free) - now)
        return wait

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

    def _make_dummy(self) -> str:
        """A hash with this hasher's parameters (so verifying against it costs what a real one does)."""
        if not self._needs_rehash(_DEFAULT_DUMMY_HASH):
            return _DEFAULT_DUMMY_HASH
        return self._hasher.hash("dummy password, never matches")

    # -- accounts ---------------------------------------------------------------------------------

    def users(self) -> list[User]:
        return self.store.users()

    def add_user(self, actor: User, name: str, password: str, role: str = OPERATOR) -> User:
        actor = self.require(actor, MANAGE_USERS)
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
        """A supervisor sets (or resets) anybody's password, their own included (a single-user station's
        account has a random one nobody knows); anyone else changes their own, giving the current one."""
        actor = self.current(actor)
        if actor is not None and actor.id == user_id and actor.active and not can(actor, MANAGE_USERS):
            found = self.store.credentials(actor.name)
            if old_password is None or found is None or not self._verify(found[1], old_password):
                raise AuthError("the current password is wrong")
        else:
            require(actor, MANAGE_USERS)
        check_password_policy(new_password)
        self.store.set_password_hash(user_id, self._hasher.hash(new_password), actor_id=actor.id)

    def set_role(self, actor: User, user_id: int, role: str) -> User:
        actor = self.require(actor, MANAGE_USERS)
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r} (use operator or supervisor)")
        with self.store.transaction():
            if role != SUPERVISOR:
                self._keep_a_supervisor(user_id)
            return self.store.set_role(user_id, role, actor_id=actor.id)

    def deactivate_user(self, actor: User, user_id: int) -> User:
        actor = self.require(actor, MANAGE_USERS)
        with self.store.transaction():
            self._keep_a_supervisor(user_id)
            return self.store.set_active(user_id, False, actor_id=actor.id)

    def reactivate_user(self, actor: User, user_id: int) -> User:
        actor = self.require(actor, MANAGE_USERS)
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

    def set_single_user_mode(self, actor: User, enabled: bool, password: str | None = None) -> None:
        """On: the app logs in as ``actor`` (a supervisor) without asking. Off: the login comes back, so
        ``actor`` must type their own password now: proof that a supervisor can log in afterwards."""
        actor = self.require(actor, SWITCH_SINGLE_USER)
        if not enabled and self.single_user_mode():
            found = self.store.credentials(actor.name)
            if not password or found is None or not self._verify(found[1], password):
                raise AuthError(f"type the password of {actor.name} to switch single-user mode off (a supervisor "
                                "must be able to log in afterwards; set one under Users first if it is not known)")
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
