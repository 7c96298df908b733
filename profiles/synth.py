"""A seeded synthetic population of Xuzhou market entities — for demos, tests and benchmarks.

Every name carries the suffix （合成） and the data are labelled synthetic wherever shown.
The mix follows the shape of a prefecture-level city's register: about two thirds 个体工商户,
mostly micro and small firms, manufacturing / trade / construction / services, a thin tail of
qualified, listed, trading and troubled firms. Generation is vectorised (1.4M rows in seconds)
and yields the column batch directly; records are decoded on demand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from profiles.columns import EPOCH, ProfileBatch, category_codes, codes
from profiles.uscc import ALPHABET, WEIGHTS

SYNTHETIC_LABEL = "合成数据（非真实企业）"
#: number fields that a profile states as whole numbers
COUNT_FIELDS = ("employees", "patents", "trademarks", "disabled_employees")
_MONEY_STREAM = 13  # the money fields draw from their own stream: every other column keeps its seeded values

_ENTITY = {"individual_business": 0.66, "enterprise": 0.31, "farmer_coop": 0.015, "branch": 0.01, "other": 0.005}
_REGION = {
    "铜山区": 0.14, "云龙区": 0.09, "鼓楼区": 0.09, "泉山区": 0.10, "贾汪区": 0.05, "丰县": 0.07,
    "沛县": 0.08, "睢宁县": 0.08, "新沂市": 0.08, "邳州市": 0.10, "徐州经济技术开发区": 0.04,
    "徐州高新技术产业开发区": 0.03, "徐州淮海国际港务区": 0.02, "市外": 0.03,
}
# (industry code, weight for enterprises, weight for individual businesses, revenue per employee 万元, scope)
_INDUSTRIES: list[tuple[str, float, float, float, str]] = [
    ("A0111", 0.02, 0.03, 15, "谷物种植；农产品初加工；农业技术推广"),
    ("A0313", 0.01, 0.02, 20, "生猪养殖；饲料销售"),
    ("C1320", 0.02, 0.005, 80, "饲料加工；粮食收购"),
    ("C1713", 0.02, 0.005, 40, "棉纺织加工；纺织品销售"),
    ("C2641", 0.02, 0.0, 90, "涂料制造；化工产品销售（不含危险化学品）"),
    ("C3011", 0.02, 0.0, 60, "水泥制造；建筑材料销售"),
    ("C3311", 0.03, 0.005, 50, "金属结构制造；钢结构工程施工"),
    ("C3411", 0.04, 0.0, 55, "锅炉及辅助设备制造；通用设备制造"),
    ("C3511", 0.04, 0.0, 70, "矿山机械制造；工程机械零部件加工"),
    ("C3670", 0.03, 0.0, 65, "汽车零部件及配件制造"),
    ("C3841", 0.01, 0.0, 90, "锂离子电池制造；储能技术服务"),
    ("C3825", 0.015, 0.0, 75, "光伏设备及元器件制造；太阳能发电技术服务"),
    ("C3971", 0.01, 0.0, 80, "电子元件制造；集成电路芯片及产品销售"),
    ("C2720", 0.01, 0.0, 95, "化学药品制剂制造；医药研发"),
    ("D4411", 0.005, 0.0, 200, "电力供应；光伏发电"),
    ("E4710", 0.05, 0.01, 60, "房屋建筑工程施工；建筑劳务分包"),
    ("E4991", 0.03, 0.01, 50, "工程管理服务；市政工程施工"),
    ("F5123", 0.04, 0.02, 300, "农副产品批发；粮油批发"),
    ("F5176", 0.05, 0.02, 260, "五金产品批发；机械设备销售"),
    ("F5191", 0.04, 0.01, 220, "国内贸易代理；进出口代理"),
    ("F5211", 0.03, 0.08, 60, "日用百货销售；食品销售"),
    ("F5221", 0.02, 0.14, 45, "食品零售；预包装食品销售"),
    ("F5232", 0.01, 0.07, 40, "服装鞋帽零售"),
    ("F5292", 0.03, 0.05, 60, "互联网销售；网上零售"),
    ("G5430", 0.03, 0.05, 40, "道路货物运输（不含危险货物）"),
    ("G5910", 0.005, 0.005, 30, "装卸搬运服务"),
    ("G5920", 0.01, 0.005, 40, "普通货物仓储服务；物流信息咨询"),
    ("G6020", 0.005, 0.01, 25, "快递服务"),
    ("H6110", 0.01, 0.02, 25, "住宿服务"),
    ("H6210", 0.03, 0.15, 22, "餐饮服务；外卖送餐"),
    ("I6510", 0.03, 0.003, 45, "软件开发；信息技术咨询服务"),
    ("I6531", 0.02, 0.002, 50, "信息系统集成服务；物联网技术服务"),
    ("I6440", 0.005, 0.002, 60, "互联网数据服务；数据处理和存储支持服务"),
    ("J6620", 0.005, 0.0, 200, "融资担保服务"),
    ("K7010", 0.02, 0.0, 400, "房地产开发经营"),
    ("K7020", 0.02, 0.003, 12, "物业管理"),
    ("L7212", 0.03, 0.01, 30, "企业管理咨询；商务信息咨询"),
    ("L7251", 0.02, 0.02, 30, "广告设计、代理、制作"),
    ("L7111", 0.01, 0.01, 60, "机械设备租赁"),
    ("M7320", 0.015, 0.0, 35, "工程和技术研究和试验发展"),
    ("M7484", 0.02, 0.005, 30, "工程设计活动；规划设计管理"),
    ("N7721", 0.005, 0.005, 30, "环境卫生管理；垃圾清运"),
    ("O8010", 0.01, 0.08, 15, "家政服务；保洁服务"),
    ("O8111", 0.01, 0.08, 18, "机动车维修；汽车美容"),
    ("O8051", 0.005, 0.07, 12, "理发及美容服务"),
    ("P8393", 0.01, 0.005, 20, "职业技能培训（不含需取得许可的培训）"),
    ("Q8421", 0.005, 0.005, 30, "诊所服务；医疗器械销售"),
    ("R8810", 0.005, 0.01, 20, "文艺创作与表演；文化活动组织"),
]
_NEEDS = [
    "想申请一笔流动资金贷款，利息能不能低一点", "公司准备上市，想了解有什么扶持", "我们是小厂，想问下有什么减税降费",
    "打算把公司注销掉，流程复杂吗", "想参加政府采购投标", "有笔货款被拖欠了一年多要不回来",
    "专利能不能拿去银行贷款", "想招几个技术工人", "企业想搬到外省去", "被罚款了，信用怎么修复",
    "想新开一个门店", "做出口的，通关能不能快一点", "工厂要新装一台变压器接电", "和员工有劳动纠纷",
    "想申请高新技术企业", "资金周转困难，社保能不能缓交", "想用科技创新券买检测服务", "",
]
_QUALS = ["high_tech", "tech_sme", "specialized_sme", "little_giant", "single_champion", "tech_center",
          "postdoc_station", "skill_master_studio"]
_FLAG_RATES = {"abnormal_operation": 0.04, "administrative_penalty": 0.03, "seriously_dishonest": 0.005,
               "bankruptcy": 0.001, "in_difficulty": 0.03, "labor_dispute": 0.01,
               "unpaid_receivables": 0.05, "criminal_case": 0.001}
_NAME_HEAD = list("恒泰华盛鑫隆宏达永兴金源彭城汉风云龙淮海楚韵东方中联瑞丰博远新创天成")
# 登记管理机关行政区划码 of the registering office (functional zones register with the city).
_REGION_CODE = {
    "鼓楼区": "320302", "云龙区": "320303", "贾汪区": "320305", "泉山区": "320311", "铜山区": "320312",
    "丰县": "320321", "沛县": "320322", "睢宁县": "320324", "新沂市": "320381", "邳州市": "320382",
    "徐州经济技术开发区": "320300", "徐州高新技术产业开发区": "320300", "徐州淮海国际港务区": "320300",
    "市外": "320100",
}


def _uscc_codes(rng: np.random.Generator, prefixes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Valid, distinct-in-practice 统一社会信用代码, vectorised (check character per GB 32100)."""
    n = len(prefixes)
    alphabet = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)
    value = {c: i for i, c in enumerate(ALPHABET)}
    keys, inverse = np.unique(np.char.add(prefixes.astype(str), regions.astype(str)), return_inverse=True)
    head = np.array([[value[c] for c in k[:2] + _REGION_CODE[k[2:]]] for k in keys], dtype=np.int64)[inverse]
    body = np.concatenate([head, rng.integers(0, len(ALPHABET), (n, 9))], axis=1)
    check = (31 - (body @ np.array(WEIGHTS)) % 31) % 31
    chars = alphabet[np.concatenate([body, check[:, None]], axis=1)]
    return np.array(chars.view("S18").ravel().astype(str), dtype=object)


# share of revenue spent on inputs that carry deductible VAT, by industry section (synthetic assumption)
_INPUT_SHARE = {"A": 0.5, "C": 0.65, "D": 0.5, "E": 0.6, "F": 0.85, "G": 0.4, "H": 0.45, "I": 0.25, "J": 0.1,
                "K": 0.5, "L": 0.3, "M": 0.3, "N": 0.3, "O": 0.35, "P": 0.2, "Q": 0.35, "R": 0.3}


def _money_fields(rng: np.random.Generator, n: int, *, is_ind: np.ndarray, industry: np.ndarray,
                  employees: np.ndarray, revenue: np.ndarray, payroll: np.ndarray, taxpayer: np.ndarray,
                  qmask: np.ndarray, qcodes: dict[str, int]) -> dict[str, np.ndarray]:
    """The fields the value formulas read (issue 13), correlated with size, industry, revenue and payroll.

    All synthetic assumptions, not statistics of real firms: taxable income is a margin of revenue with about a
    third of firms at zero (a loss is stated as 0); R&D mostly in manufacturing, software and research firms and
    in qualified ones; the unemployment-insurance premium ≈ payroll × 1% (employer 0.5% + employee 0.5%, the
    reduced rate) × the share of staff insured; layoffs are rare; small-scale taxpayers mostly file quarterly,
    general taxpayers monthly; disabled staff ≈ 0.6% of larger workforces; deductible input VAT for general
    taxpayers ≈ revenue × the industry's input share × 11%. Each field is often not stated (unknown), more often
    by individual businesses. Drawn from ``rng``, a stream of its own, so the other columns do not move.
    """
    firm = ~is_ind
    section = np.array([c[0] for c in industry], dtype=object)
    techy = np.isin(section, ["C", "I", "M"])
    qualified = (qmask & (1 << qcodes["high_tech"] | 1 << qcodes["tech_sme"] | 1 << qcodes["specialized_sme"])) != 0

    def hide(values: np.ndarray, rate: np.ndarray | float) -> np.ndarray:
        out = values.astype(float).copy()
        out[rng.random(n) < rate] = np.nan
        return out

    # 应纳税所得额: a margin of revenue; many firms at zero (losses are stated as 0)
    margin = np.where(is_ind, rng.lognormal(np.log(0.10), 0.6, n), rng.lognormal(np.log(0.04), 0.8, n)).clip(0, 0.4)
    zero = rng.random(n) < np.where(is_ind, 0.25, 0.35)
    taxable = np.where(zero, 0.0, np.round(revenue * margin, 1))
    # 研发费用: the share of firms with R&D and its intensity follow industry and qualifications
    does_rd = rng.random(n) < np.where(is_ind, 0.0, np.where(qualified, 0.95, np.where(techy, 0.35, 0.03)))
    intensity = rng.lognormal(np.log(np.where(qualified, 0.05, 0.025)), 0.5, n).clip(0, 0.25)
    rd = np.where(does_rd, np.round(revenue * intensity, 1), 0.0)
    # 失业保险费 (企业及职工): payroll × 1% × the share of staff insured; most individual businesses insure no one
    insured = np.where(is_ind, np.where(rng.random(n) < 0.2, rng.beta(4, 2, n), 0.0), rng.beta(8, 2, n))
    unemployment = np.round(payroll * 0.01 * insured, 2)
    # 裁员率: most firms laid no one off; whole people, so small firms jump in large steps
    staff = employees.astype(np.int64)
    p_layoff = np.where(rng.random(n) < 0.65, 0.0, rng.beta(1.2, 25, n))
    layoffs = rng.binomial(staff, p_layoff)
    layoff_pct = np.round(100.0 * layoffs / np.maximum(staff, 1), 1)
    # 增值税申报期: small-scale taxpayers mostly quarterly, general taxpayers monthly
    quarterly = np.where(taxpayer == "small_scale", rng.random(n) < 0.85, rng.random(n) < 0.02)
    period = np.where(quarterly, "quarterly", "monthly")
    # 安排残疾人就业人数: a few in larger workforces, none in individual businesses
    disabled = np.where(is_ind | (employees < 20), 0, rng.poisson(employees * 0.006)).astype(float)
    # 可抵扣进项税额: general taxpayers only (small-scale taxpayers deduct no input VAT: left unstated)
    share = np.array([_INPUT_SHARE.get(s, 0.4) for s in section])
    input_vat = np.where(taxpayer == "general", np.round(revenue * share * 0.11 * rng.lognormal(0, 0.3, n), 1),
                         np.nan)
    cols = {
        "taxable_income_wan": hide(taxable, np.where(is_ind, 0.6, 0.35)),
        "rd_expense_wan": hide(rd, np.where(is_ind, 0.7, np.where(techy, 0.35, 0.5))),
        "unemployment_insurance_paid_wan": hide(unemployment, np.where(is_ind, 0.7, 0.45)),
        "layoff_rate_pct": hide(layoff_pct, np.where(is_ind, 0.8, 0.55)),
        "disabled_employees": hide(disabled, np.where(is_ind, 0.8, 0.6)),
        "deductible_input_vat_wan": hide(input_vat, 0.45),
    }
    vat_period = category_codes("vat_filing_period", period)
    vat_period[rng.random(n) < np.where(firm, 0.4, 0.5)] = -1
    cols["vat_filing_period"] = vat_period
    return cols


@dataclass
class SyntheticPopulation:
    """A generated population: the encoded batch plus the text fields."""

    batch: ProfileBatch
    uscc: np.ndarray
    names: np.ndarray
    business_scope: np.ndarray
    needs: np.ndarray
    seed: int

    def __len__(self) -> int:
        return self.batch.n

    def record(self, i: int) -> dict[str, Any]:
        """Row ``i`` as an EnterpriseProfile v1 JSON object (unknown fields omitted)."""
        rec = {k: v for k, v in self.batch.record(i).items() if v is not None}
        est = self.batch.columns["established_on"][i]
        out: dict[str, Any] = {"uscc": self.uscc[i], "name": self.names[i]}
        for key in ("entity_type", "region", "industry_code"):
            out[key] = rec.get(key, self.batch.columns["industry_code"][i] if key == "industry_code" else None)
        if not np.isnan(est):
            out["established_on"] = (EPOCH + dt.timedelta(days=int(est))).isoformat()
        for key, value in rec.items():
            if key in out or key in ("size",):
                continue
            out[key] = int(value) if key in COUNT_FIELDS else value
        if self.batch.columns["size"][i] >= 0:
            out["size"] = rec["size"]
        out["business_scope"] = self.business_scope[i]
        if self.needs[i]:
            out["needs"] = self.needs[i]
        return {k: v for k, v in out.items() if v is not None}

    def records(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self.record(i)


def synthesize(n: int, seed: int = 20230419) -> SyntheticPopulation:
    """Generate ``n`` synthetic entities, deterministically for a given seed."""
    rng = np.random.default_rng(seed)
    pick = lambda table, size: rng.choice(list(table), size=size, p=np.array(list(table.values())) / sum(table.values()))  # noqa: E731
    entity = pick(_ENTITY, n)
    region = pick(_REGION, n)
    is_ind = entity == "individual_business"
    # industries: separate weights for individual businesses and the rest
    w_ent = np.array([x[1] for x in _INDUSTRIES])
    w_ind = np.array([x[2] for x in _INDUSTRIES])
    ind_idx = np.where(
        is_ind,
        rng.choice(len(_INDUSTRIES), n, p=w_ind / w_ind.sum()),
        rng.choice(len(_INDUSTRIES), n, p=w_ent / w_ent.sum()),
    )
    industry = np.array([x[0] for x in _INDUSTRIES], dtype=object)[ind_idx]
    rev_per_emp = np.array([x[3] for x in _INDUSTRIES])[ind_idx]
    scope = np.array([x[4] for x in _INDUSTRIES], dtype=object)[ind_idx]
    # employees: individuals 1–8; firms log-normal with a heavy tail
    employees = np.where(
        is_ind,
        rng.integers(1, 9, n),
        np.clip(np.round(rng.lognormal(np.log(9), 1.35, n)), 1, 30000),
    ).astype(float)
    revenue = np.round(employees * rev_per_emp * rng.lognormal(0, 0.6, n), 1)
    assets = np.round(revenue * rng.lognormal(0.1, 0.7, n), 1)
    # established_on: skewed towards recent years, 1995 … 2026-06
    start, end = (dt.date(1995, 1, 1) - EPOCH).days, (dt.date(2026, 6, 30) - EPOCH).days
    established = np.floor(end - (end - start) * rng.beta(1.2, 2.6, n))
    ownership = np.where(is_ind, "private", pick({"private": 0.93, "state_owned": 0.025, "foreign": 0.01,
                                                   "collective": 0.01, "other": 0.025}, n))
    firm = ~is_ind
    listing = np.full(n, "unlisted", dtype=object)
    u = rng.random(n)
    listing[firm & (u < 0.004)] = "reserve"
    listing[firm & (u < 0.0015)] = "neeq"
    listing[firm & (u < 0.0004) & (employees > 200)] = "listed"
    grade = np.where(is_ind, pick({"B": 0.25, "M": 0.35, "": 0.4}, n),
                     pick({"A": 0.16, "B": 0.5, "M": 0.18, "C": 0.03, "D": 0.02, "": 0.11}, n))
    general = firm & ((revenue > 500) | (rng.random(n) < 0.15))
    taxpayer = np.where(general, "general", "small_scale")
    monthly_sales = np.round(revenue / 12 * rng.lognormal(0, 0.25, n), 2)
    payroll = np.round(employees * rng.normal(7.5, 1.5, n).clip(3.5, 20), 1)
    financing = np.where(rng.random(n) < 0.3, np.round(rng.lognormal(np.log(200), 1.2, n), 0), 0.0)
    techy = np.isin(np.array([c[0] for c in industry]), ["C", "I", "M"]) & firm
    q_rates = {"high_tech": 0.06, "tech_sme": 0.10, "specialized_sme": 0.03, "little_giant": 0.002,
               "single_champion": 0.0005, "tech_center": 0.01, "postdoc_station": 0.002,
               "skill_master_studio": 0.002}
    qmask = np.zeros(n, dtype=np.uint16)
    qcodes = codes("qualifications")
    for q, rate in q_rates.items():
        scale = np.where(techy, 1.0, np.where(firm, 0.15, 0.0)) * np.where(employees > 20, 2.0, 1.0)
        qmask |= np.where(rng.random(n) < rate * scale, 1 << qcodes[q], 0).astype(np.uint16)
    tmask = np.zeros(n, dtype=np.uint16)
    tcodes = codes("trade")
    trade_rate = np.where(firm, 1.0, 0.1)
    for t, rate in {"exporter": 0.04, "importer": 0.025, "cross_border_ecommerce": 0.008, "rail_freight": 0.004}.items():
        tmask |= np.where(rng.random(n) < rate * trade_rate, 1 << tcodes[t], 0).astype(np.uint16)
    fmask = np.zeros(n, dtype=np.uint16)
    fcodes = codes("flags")
    for f, rate in _FLAG_RATES.items():
        fmask |= np.where(rng.random(n) < rate, 1 << fcodes[f], 0).astype(np.uint16)
    has_hi = (qmask & (1 << qcodes["high_tech"] | 1 << qcodes["specialized_sme"])) != 0
    patents = np.where(has_hi, rng.poisson(6, n), np.where(techy, rng.poisson(0.4, n), 0)).astype(float)
    trademarks = np.where(firm, rng.poisson(0.8, n), rng.poisson(0.1, n)).astype(float)
    needs = np.array(_NEEDS, dtype=object)[rng.integers(0, len(_NEEDS), n)]
    needs[rng.random(n) < 0.6] = ""

    # a share of fields is simply not known, as in real registers
    def hide(values: np.ndarray, rate: float) -> np.ndarray:
        out = values.astype(float).copy()
        out[rng.random(n) < rate] = np.nan
        return out

    cols: dict[str, np.ndarray] = {}

    def cat(name: str, vals: np.ndarray) -> np.ndarray:
        return category_codes(name, vals, strict=False)  # "" (an unknown grade) is coded unknown

    cols["entity_type"] = cat("entity_type", entity)
    cols["region"] = cat("region", region)
    cols["size"] = np.full(n, -1, dtype=np.int16)
    cols["ownership"] = cat("ownership", ownership)
    cols["listing_status"] = cat("listing_status", listing)
    cols["tax_credit_grade"] = cat("tax_credit_grade", grade)
    cols["taxpayer_type"] = cat("taxpayer_type", taxpayer)
    cols["employees"] = employees
    cols["annual_revenue_wan"] = hide(revenue, 0.03)
    cols["total_assets_wan"] = hide(assets, 0.08)
    cols["monthly_sales_wan"] = hide(monthly_sales, 0.05)
    cols["annual_payroll_wan"] = hide(payroll, 0.10)
    cols["financing_need_wan"] = hide(financing, 0.25)
    cols["patents"] = patents
    cols["trademarks"] = trademarks
    for name, mask in (("qualifications", qmask), ("trade", tmask), ("flags", fmask)):
        cols[name] = mask
        cols[name + "__known"] = np.ones(n, dtype=bool)
    cols["flags__known"] = rng.random(n) >= 0.02
    cols["flags"][~cols["flags__known"]] = 0
    cols["industry_code"] = industry
    cols["established_on"] = established.astype(float)
    uscc_prefix = {"enterprise": "91", "individual_business": "92", "farmer_coop": "93", "branch": "91", "other": "91"}
    uscc = _uscc_codes(rng, np.array([uscc_prefix[e] for e in codes("entity_type")])[cols["entity_type"]], region)
    heads = rng.integers(0, len(_NAME_HEAD), (n, 2))
    suffix = np.where(is_ind, "店", np.where(entity == "farmer_coop", "专业合作社", "有限公司"))
    short = np.array([x[4].split("；")[0][:4] for x in _INDUSTRIES], dtype=object)[ind_idx]
    head_chars = np.array(_NAME_HEAD, dtype=object)
    names = "徐州" + head_chars[heads[:, 0]] + head_chars[heads[:, 1]] + short + suffix.astype(object) + "（合成）"
    # a trade union (has_union, incl. joining a regional or trade joint union): common in larger firms, less so in
    # very small ones, never an individual business;
    # often not stated (unknown = -1). Drawn last so that every other column keeps its seeded values.
    union_rate = np.where(employees >= 100, 0.85, np.where(employees >= 25, 0.6, np.where(employees >= 8, 0.4, 0.15)))
    has_union = np.where(is_ind, 0, rng.random(n) < union_rate).astype(np.int16)
    has_union[rng.random(n) < 0.25] = -1
    cols["has_union"] = has_union
    cols.update(_money_fields(np.random.default_rng([seed, _MONEY_STREAM]), n, is_ind=is_ind, industry=industry,
                              employees=employees, revenue=revenue, payroll=payroll, taxpayer=taxpayer,
                              qmask=qmask, qcodes=qcodes))
    batch = ProfileBatch(n, cols)
    return SyntheticPopulation(batch, uscc, names, scope, needs, seed)
