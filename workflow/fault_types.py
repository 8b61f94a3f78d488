"""The fault types of the monthly report (§4.6: 按机器型号或故障类型统计) and their keywords.

A ticket's fault type is guessed from the words the customer used; staff can correct
it. The taxonomy is a deployment setting (``[policy.fault_types]``); this is the one
shipped for a department supporting industrial printers and similar machines.

Keywords are matched case-insensitively; English ones only as whole words (so "ink"
does not fire inside "printing"), Chinese ones anywhere in the text since Chinese has
no spaces. The type whose keywords occur most wins; ties go to the type listed first,
which is why the specific types come before the broad ones. ``other`` has no keywords:
it is what staff choose when nothing fits, never a guess.
"""

from __future__ import annotations

OTHER = "other"

DEFAULT_FAULT_TYPES: dict[str, tuple[str, ...]] = {
    "power": (
        "电源", "不开机", "开不了机", "无法开机", "断电", "跳闸",
        "no power", "won't turn on", "not turning on", "power supply",
    ),
    "paper_jam": (
        "卡纸", "夹纸", "走纸", "进纸", "paper jam", "jammed", "jam", "paper feed",
    ),
    "print_quality": (
        "打印质量", "模糊", "条纹", "重影", "色差", "偏色", "漏印",
        "print quality", "streaks", "blurry",
    ),
    "error_code": (
        "报错", "错误代码", "故障代码", "错误码", "报警", "error code", "error", "alarm",
    ),
    "network": (
        "网络", "联网", "连不上", "IP地址", "无线", "network", "wifi", "offline", "ethernet",
    ),
    "mechanical": (
        "异响", "噪音", "磨损", "卡死", "皮带", "齿轮", "noise", "noisy", "worn", "grinding",
    ),
    "software": (
        "软件", "固件", "驱动", "升级", "software", "firmware", "driver", "update",
    ),
    "installation": (
        "安装", "调试", "搬迁", "移机", "installation", "install", "setup", "commissioning",
    ),
    "consumables": (
        "耗材", "墨盒", "碳粉", "硒鼓", "色带", "墨水", "toner", "ink", "cartridge", "ribbon",
    ),
    OTHER: (),
}  # fmt: skip
