"""What the swarm refuses to do for a caller, as domain errors; the API maps each to its
HTTP answer (shard/api/routes/scouts.py), so nothing here knows about HTTP."""


class SwarmError(Exception):
    """Something asked of the swarm that it cannot do now; str() is the reason."""


class ScoutNotFound(SwarmError):
    def __init__(self, scout_id: str) -> None:
        super().__init__(f"No connected scout with id '{scout_id}'.")
        self.scout_id = scout_id


class ScoutReservedElsewhere(SwarmError):
    def __init__(self, scout_id: str) -> None:
        super().__init__(f"Scout '{scout_id}' is reserved by another key.")
        self.scout_id = scout_id


class NotEnoughFreeScouts(SwarmError):
    def __init__(self, free: int, asked: int) -> None:
        super().__init__(f"{free} scouts are free; {asked} were asked for.")
        self.free = free
        self.asked = asked


class ReservationNotFound(SwarmError):
    """No such reservation, or not the caller's (which is not revealed)."""

    def __init__(self, reservation_id: str) -> None:
        super().__init__(f"No reservation with id '{reservation_id}'.")
        self.reservation_id = reservation_id


class TicketsNotReady(SwarmError):
    def __init__(self) -> None:
        super().__init__("The golden tickets are not ready yet.")
