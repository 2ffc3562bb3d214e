# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed exceptions raised inside the collection.

Managers and the client raise these; only the module edge turns them into
``fail_json`` so that users always get a ``msg`` and never a traceback.
"""

from __future__ import annotations


class VirtError(Exception):
    """Base class: a failure with a user-facing message and optional context."""

    def __init__(self, msg, code=None, uri=None, option=None, details=None):
        super().__init__(msg)
        self.msg = msg
        self.code = code
        self.uri = uri
        self.option = option
        self.details = details or {}

    def result(self):
        """Extra keys for ``fail_json`` besides ``msg``."""
        extra = dict(self.details)
        if self.code is not None:
            extra["libvirt_error_code"] = self.code
        if self.uri is not None:
            extra["uri"] = self.uri
        if self.option is not None:
            extra["option"] = self.option
        return extra


class InvalidArgument(VirtError):
    """User input that can never succeed; raised before anything is changed."""

    def __init__(self, option, problem, **kwargs):
        super().__init__("%s: %s" % (option, problem), option=option, **kwargs)


class ConnectionFailed(VirtError):
    """The hypervisor at the URI could not be reached or refused us."""


class NotFound(VirtError):
    """A libvirt object that the task needs does not exist."""


class OperationFailed(VirtError):
    """libvirt refused or failed an operation on an existing object."""


class Conflict(OperationFailed):
    """libvirt refused because another client got there first: the object
    already exists or is already in the wanted state. The module re-reads the
    state and converges again (two runs converging the same object at once)."""


class Refused(VirtError):
    """A destructive or unsafe action the user did not opt in to."""
