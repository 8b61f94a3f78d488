"""The policy's roles (POLICY.md "Roles") as the staff file names them."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    RECEIVER = "receiver"  # 第一受理人
    ENGINEER = "engineer"  # 技术支持工程师
    SUPERVISOR = "supervisor"  # 部门主管
    MANAGER = "manager"  # 经理
    SALES_ASSISTANT = "sales_assistant"  # 销售助理
    QUALITY = "quality"  # 品质部


STAFF_ROLES = tuple(role.value for role in Role)
